"""The command line's own parsing: it must not need the heavy libraries, so ``envleads --help`` and
an operator's mistake answer at once, and a flag kept for old deployments keeps being accepted."""
import subprocess
import sys

import pytest

HEAVY = ("apache_beam", "sklearn", "jieba", "kafka", "confluent_kafka")


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys; from envleads.cli import build_parser; build_parser(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""


def test_the_retired_worker_city_share_flag_is_accepted_and_hidden():
    from envleads.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["stream", "--worker-city-share", "0.2"])
    assert args.worker_city_share == 0.2
    stream_help = parser._subparsers._group_actions[0].choices["stream"].format_help()
    assert "--worker-city-share" not in stream_help
    assert "--kafka-client" in stream_help


@pytest.mark.parametrize("command, extra", [("replay", ["--file", "x.jsonl"]), ("status", [])])
def test_replay_and_status_default_to_the_stream_group(command, extra):
    """A replay writes the state the stream continues from, and status reports the stream's lag:
    both must name the group the stream commits to."""
    import inspect

    from envleads.cli import build_parser
    from envleads.pipelines.rounds.loop import run_stream

    default_of_stream = inspect.signature(run_stream).parameters["group_id"].default
    args = build_parser().parse_args([command, *extra])
    assert args.group_id == default_of_stream
