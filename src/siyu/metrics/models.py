"""Tables of the metrics domain: contracts with their KPI lines and forecast, client-report
schedules and the reports generated.

A contract covers one brand and a period (brand-local dates, end inclusive); each contracted
KPI has four lines, a direction, a kind (which decides whether a traffic shortfall scales it)
and a bonus formula (``siyu.metrics.contracts``). The forecast holds, per month and traffic
channel, the traffic the client committed and the traffic it delivered.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column

CONTRACT_STATUSES = ("draft", "active", "closed")
REPORT_PERIODS = ("daily", "weekly", "monthly")
REPORT_FORMATS = ("xlsx", "html", "pdf")


class Contract(Base):
    __tablename__ = "contracts"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_contracts_brand_period", "brand_id", "starts_on"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="active")
    commitment_pct: Mapped[int] = mapped_column(Integer, default=80)
    notes: Mapped[str | None] = mapped_column(String(2000))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()


class ContractKpi(Base):
    """One contracted KPI: its four lines in its direction, its kind and bonus formula."""

    __tablename__ = "contract_kpis"
    __table_args__ = (UniqueConstraint("contract_id", "kpi"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    kpi: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # higher | lower
    kind: Mapped[str] = mapped_column(String(8))  # count | amount | rate | ratio
    fail_line: Mapped[float] = mapped_column(Float)
    normal_line: Mapped[float] = mapped_column(Float)
    good_line: Mapped[float] = mapped_column(Float)
    excess_line: Mapped[float] = mapped_column(Float)
    bonus: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ContractForecast(Base):
    """A month and channel of the forecast: committed traffic → expected diverted customers
    and GMV; the traffic delivered so far scales the targets (``contracts.traffic_factor``)."""

    __tablename__ = "contract_forecasts"
    __table_args__ = (UniqueConstraint("contract_id", "month", "channel"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    channel: Mapped[str] = mapped_column(String(64))
    committed_traffic: Mapped[int] = mapped_column(BigInteger)
    diversion_rate: Mapped[float] = mapped_column(Float)
    gmv_per_customer: Mapped[int] = mapped_column(BigInteger, default=0)  # fen
    delivered_traffic: Mapped[int | None] = mapped_column(BigInteger)


class ReportSchedule(Base):
    """A client report generated every day, week or month and e-mailed to its recipients."""

    __tablename__ = "report_schedules"
    __table_args__ = (Index("ix_report_schedules_due", "enabled", "next_run_at"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    period: Mapped[str] = mapped_column(String(8))  # daily | weekly | monthly
    format: Mapped[str] = mapped_column(String(8))  # xlsx | html | pdf
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_run_at: Mapped[datetime] = mapped_column()
    last_run_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class ReportRun(Base):
    """One generated report (scheduled or on demand), unique per schedule and period."""

    __tablename__ = "report_runs"
    __table_args__ = (
        UniqueConstraint("brand_id", "idem_key"),
        Index("ix_report_runs_brand_started", "brand_id", "started_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    schedule_id: Mapped[str | None] = mapped_column(ForeignKey("report_schedules.id"))
    idem_key: Mapped[str] = mapped_column(String(120))
    period: Mapped[str] = mapped_column(String(8))
    format: Mapped[str] = mapped_column(String(8))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running | done | failed
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    outbox_id: Mapped[str | None] = mapped_column(String(26))
    error: Mapped[str | None] = mapped_column(String(1000))


class ChannelCode(Base):
    """A channel code (渠道活码, the ``state`` of a WeCom add) and what one customer acquired
    through it costs, for cost per diverted customer and channel value (``metrics.kpis``)."""

    __tablename__ = "metrics_channel_codes"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(100))
    cost_per_customer_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None] = mapped_column()
