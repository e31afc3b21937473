"""Configuration: resources carry `EnvVar` settings chosen in the definitions, nothing reads the
environment at import (but the definitions) and nothing writes it, and the embedder resource
loads the packaged model with the network refused."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetExecutionContext, Definitions, EnvVar, asset, materialize
from dagster._core.remote_representation.external_data import (
    RepositorySnap,
    ResourceConfigEnvVarSnap,
)

from pipelines.definitions import (
    configured_pull_schedule,
    configured_resources,
    configured_schedule,
)
from resources.database import DatabaseResource
from resources.embedder import EmbedderResource, HashingEmbedder, SentenceTransformerEmbedder
from resources.file_store import FileStoreResource
from resources.static_embedder import DOCFIT_MODEL_NAME, DocumentFitEmbedder

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("RECON_HOME", "RECON_DATABASE_URL", "RECON_FEEDS_FILE", "RECON_CACHE_IDLE_DAYS")


@asset
def configuration(
    context: AssetExecutionContext, database: DatabaseResource, file_store: FileStoreResource
) -> None:
    """What the resources resolved to in a run (no database needed)."""
    store = file_store.store()
    context.add_output_metadata(
        {
            "url": database.url or "",
            "home": str(database.home),
            "idle_days": database.cache_idle_days,
            "root": str(store.root),
            "feeds": str(store.feeds_file),
        }
    )


def _resolved(resources: dict[str, Any]) -> dict[str, Any]:
    result = materialize([configuration], resources=resources)
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _ui_values(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the UI shows of each resource's configuration (the code location's snapshot)."""
    snap = RepositorySnap.from_def(Definitions(resources=resources).get_repository_def())
    return {r.name: dict(r.configured_values) for r in snap.resources}


def test_settings_that_are_set_become_env_vars_resolved_in_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {
        "RECON_HOME": str(tmp_path / "home"),
        "RECON_DATABASE_URL": "postgresql://recon@db.invalid/recon",
        "RECON_FEEDS_FILE": str(tmp_path / "my-feeds.yaml"),
        "RECON_CACHE_IDLE_DAYS": "7",
    }
    resources = configured_resources(environ)
    database, store = resources["database"], resources["file_store"]
    assert isinstance(database.url, EnvVar) and database.url.env_var_name == "RECON_DATABASE_URL"
    assert isinstance(database.home, EnvVar) and database.home.env_var_name == "RECON_HOME"
    assert isinstance(store.root, EnvVar) and store.root.env_var_name == "RECON_HOME"
    assert isinstance(store.feeds_file, EnvVar)

    ui = _ui_values(resources)  # an EnvVar shows as the variable's name
    assert ui["database"] == {
        "url": ResourceConfigEnvVarSnap(name="RECON_DATABASE_URL"),
        "home": ResourceConfigEnvVarSnap(name="RECON_HOME"),
        "cache_idle_days": ResourceConfigEnvVarSnap(name="RECON_CACHE_IDLE_DAYS"),
    }
    assert ui["file_store"] == {
        "root": ResourceConfigEnvVarSnap(name="RECON_HOME"),
        "feeds_file": ResourceConfigEnvVarSnap(name="RECON_FEEDS_FILE"),
        "landing": "null",
    }

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert _resolved(resources) == {
        "url": environ["RECON_DATABASE_URL"],
        "home": environ["RECON_HOME"],
        "idle_days": 7,
        "root": environ["RECON_HOME"],
        "feeds": environ["RECON_FEEDS_FILE"],
    }


def test_unset_settings_take_the_defaults_written_in_the_definitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = configured_resources({"RECON_DATABASE_URL": "  "})  # blank counts as unset
    assert not any(isinstance(v, EnvVar) for r in resources.values() for v in vars(r).values())
    ui = _ui_values(resources)  # the defaults, as values
    assert ui["database"] == {"url": "null", "home": '".recon"', "cache_idle_days": "90"}
    assert ui["file_store"] == {"root": '".recon"', "feeds_file": "null", "landing": "null"}
    assert ui["embedder"]["implementation"] == '"docfit"'

    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / ".recon"
    assert _resolved(resources) == {
        "url": "",  # the embedded server under home
        "home": ".recon",
        "idle_days": 90,
        "root": str(home),
        "feeds": str(home / "feeds.yaml"),
    }


def test_the_schedule_cron_and_timezone_come_from_the_definitions() -> None:
    default = configured_schedule({})
    assert (default.cron_schedule, default.execution_timezone) == ("0 6 * * *", "UTC")
    custom = configured_schedule(
        {"RECON_SCHEDULE_CRON": "30 5 * * 1-5", "RECON_SCHEDULE_TIMEZONE": "Europe/London"}
    )
    assert (custom.cron_schedule, custom.execution_timezone) == ("30 5 * * 1-5", "Europe/London")
    assert custom.name == default.name == "daily_reconciliation"


def test_the_pull_schedule_runs_before_the_reconciliation_in_its_timezone() -> None:
    default = configured_pull_schedule({})
    assert (default.cron_schedule, default.execution_timezone) == ("0 5 * * *", "UTC")
    custom = configured_pull_schedule(
        {"RECON_PULL_CRON": "15 4 * * 1-5", "RECON_SCHEDULE_TIMEZONE": "Europe/Amsterdam"}
    )
    assert (custom.cron_schedule, custom.execution_timezone) == ("15 4 * * 1-5", "Europe/Amsterdam")
    assert custom.name == "pull_sources" and custom.job_name == "pull_sources"


# Runs in a fresh interpreter: notes every read and write of os.environ made by the project's
# own modules (with the module that made it) while `pipelines.definitions` is imported, and the
# keys that changed (libraries may set their own: polars and pandera do at import).
IMPORT_PROBE = r"""
import json, os, sys

noted = {"get": [], "set": []}
STDLIB = ("os", "_collections_abc", "collections.abc")

def caller():
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in STDLIB:
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame is not None else ""

def noting(kind, method):
    def wrapper(self, key, *args):
        module = caller()
        if module.split(".")[0] in ("pipelines", "resources", "recon"):
            noted[kind].append([module, key])
        return method(self, key, *args)
    return wrapper

methods = {n: getattr(os._Environ, n) for n in ("__getitem__", "__setitem__", "__delitem__")}
os._Environ.__getitem__ = noting("get", methods["__getitem__"])
os._Environ.__setitem__ = noting("set", methods["__setitem__"])
os._Environ.__delitem__ = noting("set", methods["__delitem__"])
before = dict(os.environ)
import pipelines.definitions  # noqa: E402
for name, method in methods.items():
    setattr(os._Environ, name, method)
after = dict(os.environ)
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
print(json.dumps({**noted, "changed": changed}))
"""


def test_importing_the_definitions_reads_the_environment_only_there_and_writes_nothing(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "HF_"))}
    env |= {"RECON_HOME": str(tmp_path), "RECON_SCHEDULE_CRON": "0 7 * * *"}
    env.pop("TOKENIZERS_PARALLELISM", None)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["set"] == []  # no project module writes the environment
    assert not [k for k in probe["changed"] if k.startswith(("RECON_", "DAGSTER", "HF_"))]
    modules = {module for module, _key in probe["get"]}
    assert modules == {"pipelines.definitions"}, probe["get"]
    keys = {key for _module, key in probe["get"]}
    assert {"RECON_HOME", "RECON_SCHEDULE_CRON"} <= keys
    assert keys <= set(SETTINGS) | {
        "RECON_SCHEDULE_CRON",
        "RECON_SCHEDULE_TIMEZONE",
        "RECON_PULL_CRON",
        "RECON_LINKAGE_ENGINE",
        "RECON_SPARK_MASTER",
    }


@pytest.mark.slow
def test_the_embedder_resource_gives_the_fake_or_the_model() -> None:
    fake = EmbedderResource(implementation="hashing").embedder()
    assert isinstance(fake, HashingEmbedder) and fake.model_name != "all-MiniLM-L6-v2"
    assert fake.encode(["bank fee"]).shape == (1, 384)
    real = EmbedderResource(implementation="sentence-transformers", batch_size=8).embedder()
    assert isinstance(real, SentenceTransformerEmbedder) and real.batch_size == 8
    default = EmbedderResource(batch_size=8).embedder()
    assert isinstance(default, DocumentFitEmbedder) and default.model_name == DOCFIT_MODEL_NAME
    with pytest.raises(ValueError, match="fitted to the packaged all-MiniLM-L6-v2"):
        EmbedderResource(model_path="/models/other").embedder()


# Loads and uses the packaged model in a fresh interpreter where every socket connection and
# name lookup fails, with no HF_* offline variable set: the model needs no network, and no
# Hugging Face variable is set afterwards (torch sets KMP_* and TORCHINDUCTOR_* of its own).
OFFLINE_PROBE = r"""
import json, os, socket

def refused(*args, **kwargs):
    raise OSError("network refused by the test")

socket.socket.connect = refused
socket.socket.connect_ex = refused
socket.create_connection = refused
socket.getaddrinfo = refused
before = dict(os.environ)
from resources.embedder import EmbedderResource, encode_queries
embedder = EmbedderResource(device="cpu").embedder()
vectors = encode_queries(embedder, ["bank fee", "bank charge", "hello"])  # MiniLM itself
stored = embedder.encode(["bank fee", "bank charge", "hello"])  # the fitted table
print(json.dumps({
    "shape": list(vectors.shape),
    "closer": float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]),
    "stored_closer": float(stored[0] @ stored[1]) > float(stored[0] @ stored[2]),
    "changed": sorted(k for k in {*os.environ, *before} if os.environ.get(k) != before.get(k)),
}))
"""


@pytest.mark.slow
def test_the_packaged_model_loads_with_the_network_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["shape"] == [3, 384] and probe["closer"] is True and probe["stored_closer"]
    assert not [k for k in probe["changed"] if k.startswith(("HF_", "TRANSFORMERS", "TOKENIZERS"))]
    assert not [k for k in probe["changed"] if k.startswith("RECON_")]
