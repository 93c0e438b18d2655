"""Connector tables: datasets, policy and contract definitions, negotiations, agreements, transfers, data tokens."""

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text

from d4h.store.tables.base import metadata

datasets = Table(
    "datasets",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("title", String(512), nullable=False),
    Column("description", Text, nullable=False),
    Column("metadata", Text, nullable=False),  # JSON: HealthDCAT-AP description fields
    Column("created_at", String(32), nullable=False),
)

policy_definitions = Table(
    "policy_definitions",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("policy", Text, nullable=False),  # JSON: compact ODRL (no @id/target; filled per offer)
    Column("created_at", String(32), nullable=False),
)

contract_definitions = Table(
    "contract_definitions",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("access_policy_id", String(256), nullable=False),
    Column("contract_policy_id", String(256), nullable=False),
    Column("dataset_ids", Text, nullable=False),  # JSON list; the datasets this definition offers
    Column("created_at", String(32), nullable=False),
)

negotiations = Table(
    "negotiations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("side", String(16), nullable=False),
    Column("state", String(32), nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("consumer_pid", String(256), nullable=True),
    Column("provider_pid", String(256), nullable=True),
    Column("counter_party_id", String(512), nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("caller", Text, nullable=True),  # JSON: the counter-party as verified when it opened the process
    Column("doc", Text, nullable=False),  # JSON of the ContractNegotiation value
    Column("updated_at", Float, nullable=False),
    Index("ix_negotiations_work", "state", "next_attempt_at"),
    Index("ix_negotiations_consumer_pid", "consumer_pid"),
    Index("ix_negotiations_provider_pid", "provider_pid"),
)

agreements = Table(
    "agreements",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("negotiation_id", String(64), nullable=False),
    Column("dataset_id", String(256), nullable=False),
    Column("provider", String(512), nullable=False),
    Column("consumer", String(512), nullable=False),
    Column("doc", Text, nullable=False),  # JSON of the DSP Agreement as agreed
    Column("signed_at", String(32), nullable=False),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("side", String(16), nullable=False),
    Column("state", String(32), nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("consumer_pid", String(256), nullable=True),
    Column("provider_pid", String(256), nullable=True),
    Column("agreement_id", String(256), nullable=False),
    Column("counter_party_id", String(512), nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("caller", Text, nullable=True),
    Column("doc", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_transfers_work", "state", "next_attempt_at"),
    Index("ix_transfers_consumer_pid", "consumer_pid"),
    Index("ix_transfers_provider_pid", "provider_pid"),
)

data_tokens = Table(
    "data_tokens",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("transfer_id", String(64), nullable=False, index=True),
    Column("dataset_id", String(256), nullable=False),
    Column("consumer", String(512), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("uses", Integer, nullable=False),
)
