"""NodeSettings: one validated configuration per node, from config.toml overridden by D4H_* variables."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from d4h.errors import ConfigError

CONFIG_FILE = "config.toml"

# Routes whose requests are legitimately bigger than the 1 MiB default (path prefix -> bytes):
# federated-learning rounds carry model parameters and secure-aggregation vectors to holders,
# and analysis submissions may carry large cohort definitions.
DEFAULT_BODY_LIMITS: dict[str, int] = {
    "/api/v1/analysis/": 32 << 20,
    "/api/v1/analyses": 8 << 20,
}


class Role(StrEnum):
    AUTHORITY = "authority"  # dataspace governance authority: trust anchor and HDAB
    HOLDER = "holder"  # data holder, e.g. a hospital
    USER = "user"  # data user, e.g. a research institute


class Participant(BaseModel):
    """Who runs the node, as shown to others (legal facts come with the trust credentials)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    legal_name: str = ""
    country: str = Field(default="FI", pattern=r"^[A-Z]{2}$")
    registration_number: str = ""


class NodeSettings(BaseSettings):
    """Everything a node needs to start. Unknown keys are errors, so typos never pass silently."""

    model_config = SettingsConfigDict(env_prefix="D4H_", env_nested_delimiter="__", extra="forbid")

    node_dir: Path
    participant: Participant
    roles: list[Role] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    public_url: str = ""  # how peers reach this node; derived from host/port when empty
    dev_mode: bool = True  # allows plain http on loopback; refuse unsafe defaults when False
    database_url: str = ""  # empty: SQLite file data/node.db inside node_dir
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    worker_interval_s: float = Field(default=0.5, gt=0)
    lease_duration_s: float = Field(default=30.0, gt=0)
    audit_checkpoint_interval_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    authority_url: str = ""  # the dataspace authority this node trusts and onboards with
    # Trust (DCP): issuers whose credentials this node accepts; empty = the authority at authority_url
    # (and this node itself when it is the authority).
    trusted_issuers: list[str] = Field(default_factory=list)
    key_algorithm: str = Field(default="Ed25519", pattern="^(Ed25519|P-256)$")
    status_list_ttl_s: float = Field(default=300.0, ge=0)  # how long a fetched status list is trusted
    did_cache_ttl_s: float = Field(default=300.0, ge=0)
    vp_cache_ttl_s: float = Field(default=60.0, ge=0)  # 0 re-queries the caller's presentation every call
    policy_monitor_interval_s: float = Field(default=5.0, gt=0)  # how often running transfers are re-checked
    hdab_crawl_interval_s: float = Field(default=300.0, gt=0)  # authority: federated catalogue crawl period
    auto_approve_members: bool = False  # authority: issue membership without a human review (demo)
    # DSP TCK mode: seeds the TCK's datasets/agreements, scripts provider behaviour by id and enables the
    # consumer-initiation hooks. Test and conformance runs only; refused outside dev mode.
    tck_mode: bool = False
    # Holder: the OMOP analytics store (DuckDB file or PostgreSQL URL); empty = DIR/holder/analytics.duckdb
    analytics_url: str = ""
    optout_sync_interval_s: float = Field(default=3600.0, gt=0)  # holder: fetch the HDAB's opt-out list
    # Request guards (decision 0008). Body limits in bytes; prefixes that legitimately carry more get their own.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    body_limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_BODY_LIMITS))
    max_json_depth: int = Field(default=64, ge=2)
    body_chunk_timeout_s: float = Field(default=10.0, gt=0)  # each read of a request body
    body_timeout_s: float = Field(default=30.0, gt=0)  # the whole request body
    header_timeout_s: float = Field(default=10.0, gt=0)  # request line and headers, from connect or idle
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    keep_alive_timeout_s: int = Field(default=5, ge=1)
    max_concurrency: int = Field(default=1000, ge=0)  # connections + in-flight requests; 0 = unlimited
    # Token buckets per verified caller (participant DID, admin) and per client address for everything else;
    # generous enough for the connector benchmark (one consumer DID, ~300 DSP messages/s). 0 = off.
    rate_limit_per_s: float = Field(default=600.0, ge=0)
    rate_limit_burst: int = Field(default=1200, ge=1)
    address_rate_limit_per_s: float = Field(default=600.0, ge=0)
    address_rate_limit_burst: int = Field(default=1200, ge=1)

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles

    @field_validator("body_limits")
    @classmethod
    def _prefixes(cls, limits: dict[str, int]) -> dict[str, int]:
        for prefix, size in limits.items():
            if not prefix.startswith("/") or size < 1024:
                raise ValueError("body_limits maps path prefixes ('/...') to sizes of at least 1024 bytes")
        return limits

    @field_validator("log_level")
    @classmethod
    def _level(cls, level: str) -> str:
        level = level.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _safe_outside_dev(self) -> NodeSettings:
        if not self.dev_mode:
            if self.tck_mode:
                raise ValueError("tck_mode is for conformance testing and needs dev_mode = true")
            if self.base_url.startswith("http://"):
                raise ValueError("public_url must use https outside dev_mode")
            if not self.database_url.startswith("postgresql"):
                raise ValueError("production nodes (dev_mode = false) need a PostgreSQL database_url")
        return self

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.node_dir / 'data' / 'node.db'}"

    @property
    def secrets_dir(self) -> Path:
        return self.node_dir / "secrets"

    @property
    def keys_dir(self) -> Path:
        return self.node_dir / "keys"

    @property
    def run_dir(self) -> Path:
        return self.node_dir / "run"

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def effective_trusted_issuers(self) -> list[str]:
        if self.trusted_issuers:
            return list(self.trusted_issuers)
        from d4h.trust.did import did_from_url

        issuers = [did_from_url(self.authority_url)] if self.authority_url else []
        if self.has(Role.AUTHORITY):
            issuers.append(did_from_url(self.base_url))
        return issuers

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables override the TOML file (passed as init values).
        return env_settings, init_settings


def load_settings(node_dir: Path, **overrides: Any) -> NodeSettings:
    """Read ``node_dir/config.toml``, apply D4H_* environment variables and ``overrides``.

    Every problem becomes a ConfigError naming the file, the key and the fix.
    """
    path = node_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no node configuration at {path}", hint="create one with 'd4h node init DIR'")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the syntax error") from exc
    raw["node_dir"] = node_dir.resolve()
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return NodeSettings(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(
            f"{path}: {where}: {first['msg']}",
            hint=f"{len(exc.errors())} problem(s); see docs/configuration in README",
        ) from exc
