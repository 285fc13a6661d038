"""Code assets, staged at synth time without Docker or network.

The Lambda asset is the project's own packages plus the few third-party packages the
handlers import, copied from the virtualenv the app runs in. Lambda provides boto3;
pyarrow, duckdb and pandas are local-backend only and stay out (Firehose converts to
Parquet and Athena runs the SQL on AWS). The runtime is the virtualenv's Python, so the
compiled msgspec wheel (manylinux x86_64) matches the Lambda runtime's ABI.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]

# The project's packages the handlers need, and what of them only the local backend uses.
PROJECT_PACKAGES = ("streamboard", "processors", "glue", "athena_sql")
LOCAL_ONLY = ("streamboard/adapters/local", "streamboard/runtime", "streamboard/cli.py", "streamboard/synthetic.py")
# Third-party packages imported by the handlers: msgspec (registry validation) and isal (the rank writer's
# compression), manylinux wheels.
# streamboard.sql imports sqlglot only where it parses or transpiles, which no deployed handler does.
LAMBDA_DEPENDENCIES = ("msgspec", "isal")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.so.dSYM")

# What the ingest image's build context may contain: exactly what ingest/Dockerfile COPYs
# (Docker ignore syntax: exclude everything, then re-include).
INGEST_IMAGE_INCLUDE = ("constraints.txt", "pyproject.toml", "README.md", "streamboard", "ingest", "processors",
                        "glue", "athena_sql")
INGEST_IMAGE_EXCLUDE = ["*", *(f"!{p}" for p in INGEST_IMAGE_INCLUDE), "**/__pycache__", "**/*.pyc"]


def lambda_runtime() -> lambda_.Runtime:
    """The Python runtime matching the interpreter whose site-packages the asset is copied from."""
    return lambda_.Runtime(f"python{sys.version_info.major}.{sys.version_info.minor}", lambda_.RuntimeFamily.PYTHON)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed in this environment; run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def stage_lambda_code(dest: Path) -> Path:
    """Copy the handlers' code and dependencies into ``dest`` (which must not exist); return it."""
    if sysconfig.get_platform() != "linux-x86_64":
        # The compiled msgspec copied from this environment must run on Lambda (Linux, x86_64).
        raise RuntimeError(f"synthesize on linux-x86_64 (this is {sysconfig.get_platform()}): the Lambda asset "
                           "copies msgspec's compiled wheel from this virtualenv")
    dest.mkdir(parents=True)
    for pkg in PROJECT_PACKAGES:
        shutil.copytree(REPO_ROOT / pkg, dest / pkg, ignore=_IGNORE)
    for rel in LOCAL_ONLY:
        path = dest / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for dep in LAMBDA_DEPENDENCIES:
        shutil.copytree(_package_dir(dep), dest / dep, ignore=_IGNORE)
    return dest


@functools.cache
def _staged_lambda_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="streamboard-lambda-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return stage_lambda_code(root / "code")


def lambda_code() -> lambda_.Code:
    """The pipeline handlers' asset (staged once per process; the asset hash is of the contents)."""
    return lambda_.Code.from_asset(str(_staged_lambda_dir()))


# The infra-only handlers use nothing but the standard library and the runtime's boto3.
HANDLERS_RUNTIME = lambda_.Runtime.PYTHON_3_14


def handlers_code() -> lambda_.Code:
    """The infra-only handlers in ``streamboard_infra/handlers/`` (custom resources; they need only boto3)."""
    return lambda_.Code.from_asset(str(Path(__file__).parent / "handlers"), exclude=["**/__pycache__", "*.pyc"])


def ingest_image() -> ecs.ContainerImage:
    """The ingest service image, built by the CDK CLI from ``ingest/Dockerfile`` (only staged at synth)."""
    return ecs.ContainerImage.from_asset(
        str(REPO_ROOT),
        file="ingest/Dockerfile",
        exclude=INGEST_IMAGE_EXCLUDE,
        ignore_mode=cdk.IgnoreMode.DOCKER,
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
