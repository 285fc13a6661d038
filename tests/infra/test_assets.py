"""The Lambda asset runs on Lambda's Python with only the runtime's boto3; the image context holds only the service."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from streamboard_infra import assets

HANDLERS = ("processors.router.handler", "processors.transform.handler", "processors.leaderboards.query_handler",
            "processors.leaderboards.writer_handler", "processors.read_api.handler", "processors.redrive.handler")
# What the Lambda Python runtime provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "urllib3", "six.py")


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assets.stage_lambda_code(tmp_path_factory.mktemp("lambda") / "code")


@pytest.fixture(scope="module")
def runtime_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site-packages with only what Lambda's Python runtime ships."""
    site = Path(sysconfig.get_paths()["purelib"])
    root = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PACKAGES:
        (root / name).symlink_to(site / name)
    return root


def test_handlers_import_and_build_their_backend_from_the_asset_alone(staged: Path, runtime_site: Path) -> None:
    probe = f"""
import importlib, sys
sys.path[:0] = [{str(staged)!r}, {str(runtime_site)!r}]
for spec in {HANDLERS!r}:
    module, function = spec.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), function)), spec
from processors.deployed import backend
b = backend()
assert type(b.query).__name__ == "AthenaQueryEngine", b.query
import datetime as dt
from processors.leaderboards import refresher
from streamboard.refresh import Plan
chain = refresher(b, create_state=False)  # the writer lays out a batch's statements from the files alone
plan = Plan(2, dt.datetime(2026, 1, 1), 1, dt.datetime(2025, 12, 31), (("2026", "01", "01", "00"),),
            dt.datetime(2026, 1, 1))
assert [s.name for s in chain.sequence(plan)][-1] == "done"
from processors import read_api
page = read_api.handle({{"rawPath": "/", "requestContext": {{"http": {{"method": "GET"}}}}}}, b)
assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html"), page
from streamboard.ranks import pack, unpack  # the rank writer compresses its nodes with isal, from the asset
assert unpack(pack(0, [(-5, "u1", "Ada")])).entries == ((-5, "u1", "Ada"),)
for name in ("pyarrow", "duckdb", "pandas", "starlette", "uvicorn"):
    assert name not in sys.modules, name + " was imported"
print("ok")
"""
    environment = {"PATH": os.environ.get("PATH", ""), "STREAMBOARD_BACKEND": "aws", "AWS_REGION": "us-east-1"}
    # -I -S: no user site, no site-packages, no PYTHONPATH (only the asset and the runtime's packages);
    # -B: no bytecode written into the asset.
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", probe], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_the_asset_holds_no_local_only_code_and_no_heavy_dependency(staged: Path) -> None:
    top = {p.name for p in staged.iterdir()}
    assert top == {*assets.PROJECT_PACKAGES, *assets.LAMBDA_DEPENDENCIES}
    assert not (staged / "streamboard" / "adapters" / "local").exists()
    assert not list(staged.rglob("__pycache__"))
    assert (staged / "athena_sql" / "queries" / "board_snapshot.sql").is_file()
    from processors import webconsole

    assert {p.name for p in (staged / "processors" / "console").iterdir()} == {webconsole.PAGE, *webconsole.ASSETS}
    assert {p.name for p in (staged / "athena_sql" / "refresh").glob("*.sql")} == \
        {p.name for p in (assets.REPO_ROOT / "athena_sql" / "refresh").glob("*.sql")}
    size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    assert size < 50 * 1024 * 1024, f"Lambda asset is {size / 1e6:.0f} MB"


def test_the_ingest_image_context_is_what_the_dockerfile_copies(tmp_path: Path) -> None:
    import aws_cdk as cdk

    staged = tmp_path / "image"
    cdk.FileSystem.copy_directory(str(assets.REPO_ROOT), str(staged), cdk.CopyOptions(
        exclude=assets.INGEST_IMAGE_EXCLUDE, ignore_mode=cdk.IgnoreMode.DOCKER))
    assert {p.name for p in staged.iterdir()} == set(assets.INGEST_IMAGE_INCLUDE)
    dockerfile = (assets.REPO_ROOT / "ingest" / "Dockerfile").read_text()
    copied = {part.rstrip("/").split("/")[0] for line in dockerfile.splitlines()
              if line.startswith("COPY ") and "--from=" not in line for part in line.split()[1:-1]}
    assert copied <= set(assets.INGEST_IMAGE_INCLUDE), "the Dockerfile copies something the image context excludes"
    assert not list(staged.rglob("__pycache__"))


def test_the_ingest_service_imports_only_what_its_image_installs() -> None:
    """The image installs ingest/requirements.txt and the project without its dependencies: the service's
    entry point, with its aws backend built, imports no other distribution (say duckdb or pyarrow)."""
    import importlib.metadata as md
    import re
    import subprocess
    import sys

    wanted = [line.strip() for line in (assets.REPO_ROOT / "ingest" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    allowed: set[str] = set()
    todo = list(wanted)
    while todo:  # the requirements and what they require (extras and markers left out)
        name = re.split(r"[ ;<>=!\[]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in allowed:
            continue
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # for another Python (a marker says so): not installed, so never imported
        allowed.add(name)
        todo.extend(r for r in requires if "extra ==" not in r)
    probe = (
        "import sys, importlib.metadata as md\n"
        "import ingest.__main__\n"
        "from streamboard.backend import build_backend\n"
        "from streamboard.settings import load_settings\n"
        "build_backend(load_settings())\n"
        "dists = md.packages_distributions()\n"
        "tops = {m.split('.')[0] for m in list(sys.modules)}\n"
        "print(sorted({d.lower().replace('_', '-') for m in tops for d in dists.get(m, [])}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=assets.REPO_ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "STREAMBOARD_BACKEND": "aws", "AWS_DEFAULT_REGION": "us-east-1",
                              "PYTHONPATH": str(assets.REPO_ROOT)}, timeout=60, check=True).stdout
    imported = set(eval(out))  # noqa: S307 - a list literal this test printed
    assert "boto3" in imported and "msgspec" in imported
    # Present in this virtualenv, not in the image, and optional where imported: botocore takes certifi's CA
    # bundle when it is installed (else its own); setuptools comes with the virtualenv's distutils hook.
    optional = {"certifi", "setuptools"}
    assert imported - {"streamboard"} - optional <= allowed, imported - allowed
