"""Dagster's instance on PostgreSQL, built without touching this process's environment.

`dagster.yaml` (project root) keeps runs, event logs and schedules in the product database,
in a schema of their own (`dagster`), through dagster-postgres. It names two variables:
`RECON_DAGSTER_PG_URL` (a `postgresql+psycopg2://` URL whose search_path is the `dagster`
schema; dagster-postgres needs psycopg2 for its LISTEN/NOTIFY) and `RECON_DAGSTER_STORAGE`
(local artifacts and compute logs under `RECON_HOME/dagster`).

`prepare_dagster_environment()` works out their values (and creates the schema and the
storage directory); nothing here writes `os.environ`:
- in this process, `dagster_instance()` hands those values to Dagster as instance overrides
  (`dagster.yaml` with each `{env: NAME}` replaced by its value);
- Dagster processes that `recon ui` starts (webserver, daemon, and the run workers they start)
  get them in the environment passed to the child, `dagster_process_environment()`, with an
  absolute `RECON_HOME` too, so the definitions' `EnvVar` resources see the same state
  directory whatever the child's working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

import psycopg
import yaml
from dagster import DagsterInstance
from psycopg import sql

from resources.database import libpq_url, resolve_database_url, with_driver
from resources.settings import DAGSTER_SCHEMA, PROJECT_ROOT, recon_home

INSTANCE_FILE = "dagster.yaml"


def dagster_pg_url(url: str) -> str:
    """The dagster-postgres URL for the product database `url`, pinned to Dagster's schema."""
    return with_driver(url, "psycopg2", options=f"-csearch_path={DAGSTER_SCHEMA}")


def prepare_dagster_environment(url: str | None = None) -> dict[str, str]:
    """Create Dagster's schema and storage directory; the variables `dagster.yaml` reads.

    Returns DAGSTER_HOME (`$DAGSTER_HOME` when set, else the project root, where
    `dagster.yaml` is), RECON_DAGSTER_PG_URL, RECON_DAGSTER_STORAGE and RECON_HOME (absolute:
    a Dagster process started elsewhere sees the same state directory). `os.environ` is left
    as it is; `recon db env` prints these as shell exports.
    """
    home = recon_home()
    url = url or resolve_database_url()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(DAGSTER_SCHEMA))
        )
    storage = home / "dagster" / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    return {
        "DAGSTER_HOME": os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT),
        "RECON_DAGSTER_PG_URL": dagster_pg_url(url),
        "RECON_DAGSTER_STORAGE": str(storage),
        "RECON_HOME": str(home),
    }


def dagster_process_environment(
    url: str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a Dagster child process (`dagster dev`): `base` (default this
    process's environment, copied) plus `prepare_dagster_environment`'s variables."""
    return {**(os.environ if base is None else base), **prepare_dagster_environment(url)}


def _resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every `{env: NAME}` replaced by `env[NAME]` (a KeyError names a missing one)."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return env[value["env"]]
        return {key: _resolve_env(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_env(item, env) for item in value]
    return value


def instance_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """The top-level sections of `dagster.yaml` that name a variable, with its value in place."""
    with open(os.path.join(env["DAGSTER_HOME"], INSTANCE_FILE), encoding="utf-8") as file:
        config = yaml.safe_load(file) or {}
    resolved = {key: _resolve_env(section, env) for key, section in config.items()}
    return {key: section for key, section in resolved.items() if section != config[key]}


def dagster_instance(url: str | None = None) -> DagsterInstance:
    """The Dagster instance on PostgreSQL, as `dagster.yaml` describes it (no env read by it).

    `DagsterInstance.local_temp(directory, overrides)` is Dagster's public way to build a
    persistent instance from a directory's `dagster.yaml` with overrides (the "temp" is only
    when no directory is given).
    """
    env = prepare_dagster_environment(url)
    return _instance(tuple(sorted(env.items())))


@cache
def _instance(env_items: tuple[tuple[str, str], ...]) -> DagsterInstance:
    """One instance per configuration and process, kept: Dagster's storages hold only a weak
    reference to their instance, so an instance dropped while one of them is still in use
    fails with "undefined DagsterInstance weakref"."""
    env = dict(env_items)
    return DagsterInstance.local_temp(env["DAGSTER_HOME"], overrides=instance_overrides(env))
