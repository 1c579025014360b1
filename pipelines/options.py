"""All pipeline options in one place, and the plain settings the transforms receive.

Every flag has a default that works offline on one machine: the embedded broker's topics, the
packaged dictionaries and configuration, the registry's production model. ``run()`` functions read the
options once with ``view_as(EnvleadsOptions)`` and pass :class:`StageSettings` (plain values) into
the transforms, so no transform reads options or ``os.environ`` itself. Secrets are not options:
the pseudonymisation key comes from the environment of the workers (see ``envleads.privacy``).
"""
from __future__ import annotations

import logging
import os

from typing import List, NamedTuple, Optional

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from envleads.decode import DecodeLimits

LOG = logging.getLogger(__name__)

# The local runner is named explicitly: Beam's default would first try to download Prism, which
# fails offline. FnApiRunner runs batch pipelines (and bounded rounds) in-process.
DEFAULT_RUNNER = "FnApiRunner"



class EnvleadsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--model_version", default="production",
                            help="pollution-type model: 'production' (the version the registry's alias names), "
                                 "'latest' (the newest registered) or a version")
        parser.add_argument("--model_registry", default=None,
                            help="registry folder (default: $ENVLEADS_REGISTRY, the package's models/registry, or ~/.cache/envleads/registry)")
        parser.add_argument("--review_threshold", type=float, default=None,
                            help="type confidence under which a complaint is flagged needs_review (default: the model's)")
        parser.add_argument("--max_text_bytes", type=int, default=DecodeLimits().max_text_bytes,
                            help="texts over this many UTF-8 bytes go to the dead letters")
        parser.add_argument("--max_event_bytes", type=int, default=DecodeLimits().max_event_bytes,
                            help="events over this many bytes go to the dead letters")
        parser.add_argument("--production", action="store_true", default=False,
                            help="require ENVLEADS_PSEUDONYM_KEY(_FILE) instead of generating a per-run key")
        parser.add_argument("--classify_batch_size", type=int, default=64,
                            help="complaints per classifier call (batching amortises scikit-learn's overhead)")


class StageSettings(NamedTuple):
    """Plain, picklable values the stages need; built once from the options."""

    model_version: str = "production"
    model_registry: Optional[str] = None
    review_threshold: Optional[float] = None
    limits: DecodeLimits = DecodeLimits()
    production: bool = False
    classify_batch_size: int = 64


def settings_from_options(options: PipelineOptions) -> StageSettings:
    view = options.view_as(EnvleadsOptions)
    return StageSettings(
        model_version=view.model_version,
        model_registry=view.model_registry,
        review_threshold=view.review_threshold,
        limits=DecodeLimits(max_event_bytes=view.max_event_bytes, max_text_bytes=view.max_text_bytes),
        production=view.production,
        classify_batch_size=view.classify_batch_size,
    )


def pipeline_options(beam_args: List[str], streaming: bool = False) -> PipelineOptions:
    """Options from the command line's Beam arguments, with the offline local runner by default."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    if streaming:
        standard.streaming = True
    return options


def prepare_worker_environment(settings: StageSettings) -> str:
    """Makes sure a model is registered and a pseudonymisation key is set for this run's workers.

    In demo mode (no --production) a missing key is generated once here and put in the
    environment, so every local worker process pseudonymises with the same key. Returns the model
    version the run will use: ``production`` resolved through the registry's alias (an empty
    registry gets the default model trained and promoted; a production model that cannot be
    loaded fails here, with the fix, never silently retrained), ``latest`` the newest version.
    """
    from envleads.models.registry import resolve_for_run
    from envleads.privacy import KEY_ENV, KEY_FILE_ENV, load_pseudonym_key

    key = load_pseudonym_key(settings.production)  # raises here, not in every worker, when unusable
    if not (os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV)):
        os.environ[KEY_ENV] = key.hex()
        LOG.warning("no pseudonymisation key configured: generated one for this run only "
                    "(reporter keys are not comparable across runs; set %s in production)", KEY_ENV)
    return resolve_for_run(settings.model_version, settings.model_registry)


def without_job_stream_deadline(runner):
    """``runner``, made to wait for its job as long as the job runs: for portable runners (Prism,
    ``PortableRunner``, Flink, Spark), whose job service handle (Beam 2.78,
    ``portable_runner.JobServiceHandle.run``) opens the job's state and message streams with
    ``--job_server_timeout`` (300 s by default) as their gRPC deadline, although that option is
    documented as not applying to the run time. Without this, ``wait_until_finish`` raises
    ``DEADLINE_EXCEEDED`` on any job that runs longer than the timeout (an unbounded job always),
    and the runner's cleanup then stops Prism and the SDK worker mid-job. The timeout still bounds
    the calls before the run (options, prepare). Other runners are returned unchanged.
    """
    from apache_beam.runners.portability.portable_runner import PortableRunner

    if not isinstance(runner, PortableRunner):
        return runner
    create_handle = runner.create_job_service_handle

    def create_job_service_handle(job_service, options):
        handle = create_handle(job_service, options)
        submit_run = handle.run

        def run(preparation_id):
            handle.timeout = None  # run() only opens the streams and starts the job
            return submit_run(preparation_id)

        handle.run = run
        return handle

    runner.create_job_service_handle = create_job_service_handle
    return runner


def prepared_run(beam_args: Optional[List[str]]):
    """The options and stage settings of a run, with its worker environment prepared (see
    :func:`prepare_worker_environment`) and ``production``/``latest`` resolved to a version."""
    options = pipeline_options(list(beam_args or []))
    settings = settings_from_options(options)
    return options, settings._replace(model_version=prepare_worker_environment(settings))
