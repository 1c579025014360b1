"""`envleads demo` (what `make demo` runs): a ranked table, nothing left running, no identity shown."""
import os
import re
import socket
import subprocess
import sys

import pytest

from envleads.generator import generate_events

pytestmark = pytest.mark.kafka


def test_demo_prints_ranked_leads_and_leaves_no_broker_behind():
    result = subprocess.run([sys.executable, "-m", "envleads.cli", "demo", "--count", "200", "--seed", "7"],
                            capture_output=True, text=True, timeout=600,
                            env={key: value for key, value in os.environ.items() if key != "ENVLEADS_PSEUDONYM_KEY"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert re.search(r"^\s*rank\s+tier\s+score", result.stdout, re.MULTILINE)
    assert "broker stopped" in result.stdout
    port = int(re.search(r"at 127\.0\.0\.1:(\d+)", result.stdout).group(1))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the embedded broker is still listening"
    identities = {value for event in generate_events(200, 7) for value in
                  (event.truth.get("reporter_phone"), event.truth.get("reporter_id_number")) if value}
    assert identities and not [value for value in identities if value in output]
