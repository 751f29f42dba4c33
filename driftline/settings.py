"""One typed settings object for driftline, read once from the environment.

Every option is a ``DRIFTLINE_*`` environment variable (or a CLI flag that
overrides it). Invalid values fail at start with a message naming the
variable, never later in the middle of a stream.

Example:
    >>> s = Settings(kafka_bootstrap="127.0.0.1:9092")
    >>> s.kafka_client_config()["bootstrap.servers"]
    '127.0.0.1:9092'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Ports of the embedded local servers (``driftline infra up``); chosen off the
#: well-known 9092/9200 so a real Kafka or Elasticsearch on the host is untouched.
LOCAL_KAFKA_PORT = 19092
LOCAL_ES_PORT = 19200


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each bad variable."""

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> "SettingsError":
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"DRIFTLINE_{field.upper()}: {err['msg']}")
        return cls("invalid driftline settings:\n  " + "\n  ".join(lines))


class Settings(BaseSettings):
    """driftline's configuration.

    Example:
        >>> Settings(es_url="http://localhost:9200").es_url
        'http://localhost:9200'
    """

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", extra="ignore", frozen=True)

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = Field(
        f"127.0.0.1:{LOCAL_KAFKA_PORT}", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    kafka_session_timeout_ms: int | None = Field(
        None,
        ge=1000,
        description="consumer-group session timeout; None keeps the client default. "
        "Local and test runs use 6000: a group join on the embedded broker then takes ~4 s, not ~23 s.",
    )

    # --- Topics ------------------------------------------------------------
    topic_partitions: int = Field(4, ge=1, description="partitions of the predictions, feedback and dead-letter topics")
    topic_replication_factor: int = Field(1, ge=1, description="replication factor of topics driftline creates (3 on a real cluster)")
    predictions_topic: str = "driftline.predictions"
    feedback_topic: str = "driftline.feedback"
    deadletter_topic: str = "driftline.deadletter"
    alerts_topic: str = "driftline.alerts"
    baselines_topic: str = Field("driftline.baselines", description="compacted topic of training baselines, one record per model|version (`driftline baseline publish`)")

    # --- Schema registry (Confluent wire format when set) --------------------
    schema_registry_url: str | None = Field(
        None, description="Confluent schema registry URL (mock:// for an in-process one); unset = single-object encoding"
    )
    schema_registry_basic_auth: SecretStr | None = Field(None, description="user:password for the registry")

    # --- Elasticsearch -----------------------------------------------------
    es_url: str = f"http://127.0.0.1:{LOCAL_ES_PORT}"
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_api_key: SecretStr | None = None
    es_ca_certs: Path | None = None
    es_verify_certs: bool = True

    es_index_prefix: str = Field("driftline", pattern=r"^[a-z0-9][a-z0-9_.]*$", description="indices are <prefix>-<stream>-YYYY.MM.DD")

    # --- The worker (streams/) ----------------------------------------------
    app_id: str = Field("driftline", description="Faust app id: the consumer group and the prefix of internal topics")
    store: str = Field("memory://", description="table store: memory:// (tests, demo) or rocksdb:// (production)")
    worker_dir: Path = Field(Path(".driftline/worker"), description="the worker's local data: table stores (RocksDB) and offsets")
    batch_size: int = Field(1000, ge=1, description="records per batch through each stage")
    batch_within_s: float = Field(0.5, gt=0, description="seconds a stage waits for a batch to fill")
    fetch_max_wait_ms: int = Field(100, ge=0, le=30_000, description="the longest the worker's Faust consumer lets the broker hold a fetch that has no data (Faust's own value, 1500, made each stage wait up to 1.5 s for records sent by the stage before it at the end of a backlog: streams/transport.py)")
    intake_within_s: float = Field(0.1, gt=0, description="seconds the intake's batch consumer waits for batch_size records before it forwards what it has")
    intake_process: bool = Field(True, description="run the intake (batch consumer and normalizer) in a child process, on another core than the worker's event loop; false: on a thread of the worker")
    detect_process: bool = Field(True, description="keep, feed and checkpoint the detectors' banks in a child process, on another core than the worker's event loop; false: on the event loop")
    label_window_s: float = Field(7 * 86400, gt=0, description="how long, in event time, a prediction waits for its label (and a label for its prediction)")
    prediction_sample_rate: float = Field(1.0, ge=0, le=1, description="share of raw predictions indexed into Elasticsearch (drift events, alerts and metrics are always indexed)")
    outcome_sample_rate: float = Field(1.0, ge=0, le=1, description="share of joined outcomes indexed into Elasticsearch (the detectors and windowed metrics still see every outcome)")
    model_sample_rates: dict[str, float] = Field(default_factory=dict, description='per-model overrides of prediction_sample_rate, JSON: {"fraud-detector": 0.1}')
    slice_keys: list[str] = Field(default_factory=list, description='slice attributes that get their own detectors, JSON: ["region"]')
    pseudonymize_features: list[str] = Field(default_factory=list, description='features holding personal data: replaced by a keyed pseudonym before anything is stored, JSON list')
    drop_features: list[str] = Field(default_factory=list, description="features dropped on ingest (never stored nor indexed), JSON list")
    json_aliases: dict[str, str] = Field(default_factory=dict, description='JSON log lines: source field name -> contract name, JSON: {"ts": "timestamp", "model": "model_name"}')
    json_epoch_unit: Literal["auto", "s", "ms"] = Field("auto", description="JSON log lines: unit of numeric timestamps (auto: by magnitude)")
    pseudonymization_key: SecretStr | None = Field(None, description="HMAC key that pseudonymizes subject and rater ids; required by the worker")
    detect_idle_s: float = Field(30.0, gt=0, description="wall-clock seconds after which a silent source partition stops holding values back from the detectors")
    alert_cooldown_s: float = Field(3600.0, ge=0, description="event-time cooldown per (model, version, stream, slice) between two alerts")
    webhook_url: str | None = Field(None, description="POST each alert as JSON to this URL")
    windows_enabled: bool = Field(True, description="windowed metrics, baseline comparisons and schema-skew checks (off: only the online detectors)")
    metrics_window_s: float = Field(300.0, gt=0, description="size of the tumbling event-time windows of metrics and baseline comparisons")
    metrics_lateness_s: float = Field(60.0, ge=0, description="how long after its end (in event time) a window still takes late events before it is closed and compared")
    slices: list[str] = Field(default_factory=list, description='slices with their own metrics and comparisons, JSON: ["region=eu", "amount=[100,)", "region=eu&channel=web"]')
    positive_label: str | None = Field(None, description="the positive class of binary classifiers: precision, recall, F1, ROC AUC and fairness rates are computed for it")
    sensitive_attribute: str | None = Field(None, description="slice label or categorical feature whose groups are compared for fairness (false-positive/negative rate and accuracy gaps)")
    drift_thresholds: dict[str, dict[str, float]] = Field(default_factory=dict, description='window comparison thresholds by feature (or "prediction" / "label"), JSON: {"amount": {"wasserstein": 0.2}, "country": {"linf": 0.05}}; "*" sets the default of every feature')
    fairness_gap_threshold: float = Field(0.1, gt=0, le=1, description="largest accepted gap between groups' rates before a fairness alert")
    report_interval_s: float = Field(10.0, gt=0, description="seconds between two log lines of the worker's counts, phase timings and event-to-indexed latency")
    worker_web_port: int | None = Field(None, description="Faust's web server port; None disables it")

    # --- Embedded local infrastructure --------------------------------------
    infra_dir: Path = Field(Path(".driftline"), description="data, logs and pid files of `driftline infra`")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("must name at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("es_url")
    @classmethod
    def _check_es_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("schema_registry_url")
    @classmethod
    def _check_registry_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://", "mock://")):
            raise ValueError(f"{value!r} must start with http://, https:// or mock://")
        return value

    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """Read the environment (plus explicit overrides), or raise :class:`SettingsError`.

        Example:
            >>> Settings.load(kafka_bootstrap="broker:9092").kafka_bootstrap
            'broker:9092'
        """
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError.from_validation_error(exc) from None

    def to_env(self) -> dict[str, str]:
        """The ``DRIFTLINE_*`` variables that reproduce these settings in a child process.

        Example:
            >>> Settings(app_id="x").to_env()["DRIFTLINE_APP_ID"]
            'x'
        """
        import json

        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            env[f"DRIFTLINE_{name.upper()}"] = str(value)
        return env

    def kafka_client_config(self) -> dict[str, Any]:
        """The librdkafka settings shared by producers, consumers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
        return conf

    def kafka_consumer_config(self, group_id: str) -> dict[str, Any]:
        """Consumer settings: the shared ones, the group, and the session timeout if lowered."""
        conf = self.kafka_client_config() | {"group.id": group_id}
        if self.kafka_session_timeout_ms is not None:
            conf["session.timeout.ms"] = self.kafka_session_timeout_ms
            conf["heartbeat.interval.ms"] = max(250, self.kafka_session_timeout_ms // 6)
        return conf

    def schema_registry_config(self) -> dict[str, Any] | None:
        """Settings for confluent-kafka's ``SchemaRegistryClient``, or None without a registry."""
        if self.schema_registry_url is None:
            return None
        conf: dict[str, Any] = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth.get_secret_value()
        return conf

    def es_client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``elasticsearch.Elasticsearch`` / ``AsyncElasticsearch``."""
        opts: dict[str, Any] = {"hosts": [self.es_url], "verify_certs": self.es_verify_certs}
        if self.es_username and self.es_password:
            opts["basic_auth"] = (self.es_username, self.es_password.get_secret_value())
        if self.es_api_key:
            opts["api_key"] = self.es_api_key.get_secret_value()
        if self.es_ca_certs:
            opts["ca_certs"] = str(self.es_ca_certs)
        return opts
