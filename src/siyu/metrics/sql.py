"""The KPI SQL: per-customer features over the lake, then one aggregation per group.

DuckDB embedded reads the brand's lake tables as pyarrow datasets (filters on ``dt`` prune
whole day partitions, projections prune columns), the customer dimension and the identity map
as Arrow tables (``siyu.metrics.scope``). Parameters (``$name``) carry every date and number:
no value is ever formatted into the SQL text.

The statement has three layers:

1. **facts** — friendship (first add, first deletion after it, channel code of the first add),
   the period's events per customer, the period's paid orders placed while a friend, group
   membership, and message → reply pairs (an ASOF join);
2. ``pc`` — one row per customer in scope with a 0/1 flag or an amount per formula side;
3. the aggregation by the group key ``g`` (``siyu.metrics.kpis`` builds the grouping).

What each column means is documented in ``docs/metrics.md``.
"""

from __future__ import annotations

from siyu.metrics.definitions import ADDED, DELETED, INTERACTION_TYPES


def _in(values: tuple[str, ...]) -> str:
    # constants of this module only (never user input)
    return ", ".join(f"'{v}'" for v in values)


FRIEND_TYPES = (ADDED, *DELETED)
PERIOD_TYPES = (*INTERACTION_TYPES, "referral")

# friendship per customer from ``fe`` (customer_id, event_type, occurred_at, state): the first
# add, its channel code, and the first deletion at or after it
_FRIENDSHIP = f"""adds AS (
  SELECT customer_id, min(occurred_at) AS added_at,
    arg_min(state, occurred_at) AS channel_code
  FROM fe WHERE event_type = '{ADDED}' GROUP BY customer_id
),
fr AS (
  SELECT a.customer_id, a.added_at, a.channel_code, min(d.occurred_at) AS deleted_at
  FROM adds a LEFT JOIN fe d
    ON d.customer_id = a.customer_id AND d.event_type <> '{ADDED}'
   AND d.occurred_at >= a.added_at
  GROUP BY a.customer_id, a.added_at, a.channel_code
)"""  # noqa: S608 - constants of this module only

FRIENDS = f"""
fe AS MATERIALIZED (
  SELECT m.customer_id, e.event_type, e.occurred_at, e.prop AS state
  FROM evh e JOIN idm m ON e.identity_key = m.identity_key
  WHERE e.event_type IN ({_in(FRIEND_TYPES)}) AND e.dt <= $asof_day AND e.occurred_at < $asof
),
{_FRIENDSHIP}"""  # noqa: S608 - constants of this module only

GROUP_TYPES = ("group_joined", "group_left")
ALWAYS = (*FRIEND_TYPES, *GROUP_TYPES)  # read over the whole history
WINDOWED = (*PERIOD_TYPES, "message_sent")  # read from $lo_day only

# The overview reads three fact relations keyed on ``ik`` (``siyu.metrics.rollup``: the
# maintained facts rollup, or the same rows from the raw tables): ``fh`` the friendship and
# group events over the whole history, ``fw`` the other event types only from the days their
# windows need (the rollup is sorted by time, so most row groups are skipped), ``fo`` the
# orders — each joined once to ``idx`` (identity key → dense customer index, built once per
# query from today's identity map), with the one JSON property a type needs already parsed
# (channel code, chat id, CSAT) and times as µs since the epoch.
# The facts a query reads, loaded into the tables ``exh`` (history events), ``pfa`` (period
# features per customer), ``exw`` (message events) and ``oxa`` (orders), keyed on the dense
# customer index, before the statement runs (``siyu.metrics.kpis.load_facts``). Each joins
# its facts once to ``idx`` (``ik`` → ``cix``, a table built first from ``idk``); as tables
# of known size they give the statement's joins (the reply ASOF join above all) exact
# cardinalities.
# the scope's windowed facts: every period type from the start of the silence window to the
# end of the reply window
_WINDOWED = """
  SELECT m.cix AS customer_id, e.event_type, e.occurred_us AS occurred_at, e.prop
  FROM fw e JOIN idx m ON e.ik = m.ik
  WHERE e.dt BETWEEN $lo_day AND $reply_day AND e.occurred_us < $asof_us"""


def _pf(windowed: str) -> str:
    return f"""WITH ex AS (
  SELECT * FROM exh
  UNION ALL
  {windowed}
)
  SELECT customer_id,
    max(occurred_at) FILTER (WHERE event_type IN ({_in(INTERACTION_TYPES)})
                             AND occurred_at >= $silent_from_us) AS last_int,
    count(*) FILTER (WHERE event_type IN ({_in(INTERACTION_TYPES)})
                     AND occurred_at >= $s_us) AS n_int,
    count(*) FILTER (WHERE event_type = 'message_received' AND occurred_at >= $s_us) AS n_msg,
    sum(TRY_CAST(prop AS INTEGER))
      FILTER (WHERE event_type = 'survey_answered' AND occurred_at >= $s_us) AS csat_sum,
    count(TRY_CAST(prop AS INTEGER))
      FILTER (WHERE event_type = 'survey_answered' AND occurred_at >= $s_us) AS csat_n,
    count(*) FILTER (WHERE event_type = 'referral' AND occurred_at >= $s_us) AS n_ref
  FROM ex
  WHERE event_type IN ({_in(PERIOD_TYPES)}) AND occurred_at >= $lo_us AND occurred_at < $e_us
  GROUP BY customer_id"""  # noqa: S608 - constants of this module only


_PF = _pf(_WINDOWED)

LOADS = {
    "exh": """
  SELECT m.cix AS customer_id, e.event_type, e.occurred_us AS occurred_at, e.prop
  FROM fh e JOIN idx m ON e.ik = m.ik
  WHERE e.dt <= $asof_day AND e.occurred_us < $asof_us""",
    # per-customer period features straight from the windowed facts (never materialised)
    # and the history ones (group joins are interactions)
    "pfa": _PF,
    # the message facts the reply ASOF join needs (friendship and group facts are in exh)
    "exw": """
  SELECT m.cix AS customer_id, e.event_type, e.occurred_us AS occurred_at, e.prop
  FROM fw e JOIN idx m ON e.ik = m.ik
  WHERE e.dt BETWEEN $start_day AND $reply_day AND e.occurred_us < $asof_us
    AND (e.event_type = 'message_sent' OR e.event_type = 'message_received')
    AND e.occurred_us >= $s_us""",
    "oxa": """
  SELECT m.cix AS customer_id, o.kind, o.occurred_us AS occurred_at, o.paid_fen, o.refund_fen
  FROM fo o JOIN idx m ON o.ik = m.ik
  WHERE o.dt BETWEEN $orders_from_day AND $end_day AND o.occurred_us < $e_us""",
}

# A narrow scope (a store, a guide's customers, a store manager) has few windowed rows: they
# are loaded once (``exs``) and both the period features and the message facts read them,
# instead of scanning the windowed facts twice. (Brand-wide, keeping millions of rows costs
# more than the second scan.)
NARROW_LOADS = {
    "exh": LOADS["exh"],
    "exs": _WINDOWED,
    "pfa": _pf("SELECT * FROM exs"),
    "exw": """
  SELECT * FROM exs
  WHERE (event_type = 'message_sent' OR event_type = 'message_received')
    AND occurred_at >= $s_us""",
    "oxa": LOADS["oxa"],
}

_SCANS = f"""
fe AS (
  SELECT customer_id, event_type, occurred_at, prop AS state FROM exh
  WHERE event_type IN ({_in(FRIEND_TYPES)})
),
{_FRIENDSHIP},
pf AS (SELECT * FROM pfa),
ox AS (SELECT * FROM oxa),
ordf AS (
  SELECT ox.customer_id, sum(ox.paid_fen) AS gmv, count(*) AS n_orders
  FROM ox JOIN fr ON ox.customer_id = fr.customer_id
  WHERE ox.kind = 'paid' AND ox.occurred_at >= $s_us
    AND fr.added_at <= ox.occurred_at
    AND (fr.deleted_at IS NULL OR fr.deleted_at > ox.occurred_at)
  GROUP BY ox.customer_id
),
ge AS (
  SELECT customer_id,
    max(occurred_at) FILTER (WHERE event_type = 'group_joined') AS last_join,
    max(occurred_at) FILTER (WHERE event_type = 'group_left') AS last_left
  FROM exh
  WHERE event_type IN ({_in(GROUP_TYPES)}) AND occurred_at < $e_us
  GROUP BY customer_id
),
val AS (
  SELECT customer_id,
    sum(CASE WHEN kind = 'paid' THEN paid_fen ELSE 0 END)
    - sum(CASE WHEN kind = 'refunded' THEN coalesce(refund_fen, 0) ELSE 0 END) AS net
  FROM ox WHERE occurred_at >= $value_from_us
  GROUP BY customer_id
),
mem AS (
  SELECT DISTINCT cix AS customer_id FROM idm WHERE starts_with(identity_key, 'member_no:')
),
pc AS (
  SELECT d.customer_id,
    fr.channel_code,
    CAST(fr.added_at >= $s_us AND fr.added_at < $e_us AS INTEGER) AS diverted,
    CAST(d.seen >= $s_us AND d.seen < $e_us AS INTEGER) AS reached,
    CAST(d.seen >= $s_us AND d.seen < $e_us AND fr.added_at < $e_us AS INTEGER)
      AS reached_diverted,
    CASE WHEN fr.added_at >= $s_us AND fr.added_at < $e_us THEN coalesce(c.cost_fen, 0) ELSE 0 END
      AS cost_fen,
    CAST(fr.added_at >= $s_us AND fr.added_at < $e_us
         AND fr.added_at + $retention_us <= $asof_us AS INTEGER) AS ret_cohort,
    CAST(fr.added_at >= $s_us AND fr.added_at < $e_us
         AND fr.added_at + $retention_us <= $asof_us
         AND (fr.deleted_at IS NULL OR fr.deleted_at >= fr.added_at + $retention_us)
         AS INTEGER) AS retained,
    coalesce(pf.csat_sum, 0) AS csat_sum,
    coalesce(pf.csat_n, 0) AS csat_n,
    CAST(fr.added_at < $s_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $s_us) AS INTEGER)
      AS friend_start,
    CAST(fr.added_at < $s_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $s_us)
         AND (fr.deleted_at < $e_us
              OR (fr.added_at <= $silent_from_us AND pf.last_int IS NULL)) AS INTEGER) AS churned,
    CAST(fr.added_at < $e_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $s_us) AS INTEGER)
      AS friend_period,
    CAST(fr.added_at < $e_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $s_us)
         AND coalesce(pf.n_msg, 0) > 0 AS INTEGER) AS interacted,
    coalesce(ordf.gmv, 0) AS gmv,
    CAST(coalesce(ordf.n_orders, 0) >= 1 AS INTEGER) AS buyer,
    CAST(coalesce(ordf.n_orders, 0) >= 2 AS INTEGER) AS repurchaser,
    CAST(coalesce(pf.n_ref, 0) > 0 AS INTEGER) AS referred,
    CAST(fr.added_at < $e_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $e_us) AS INTEGER)
      AS friend_end,
    CASE WHEN fr.added_at < $e_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $e_us)
      THEN coalesce(val.net, 0) ELSE 0 END AS value_fen,
    CAST(mem.customer_id IS NOT NULL AND coalesce(pf.n_int, 0) > 0 AS INTEGER)
      AS active_member,
    coalesce(kx.published, 0) AS koc_published,
    coalesce(kx.brought, 0) AS koc_brought,
    CAST(fr.added_at < $e_us AND (fr.deleted_at IS NULL OR fr.deleted_at >= $s_us)
         AND ge.last_join IS NOT NULL
         AND (ge.last_left IS NULL OR ge.last_left < ge.last_join OR ge.last_left >= $s_us)
         AS INTEGER) AS in_group
  FROM (SELECT cix AS customer_id, epoch_us(first_seen) AS seen FROM dim) d
  LEFT JOIN fr ON fr.customer_id = d.customer_id
  LEFT JOIN pf ON pf.customer_id = d.customer_id
  LEFT JOIN ordf ON ordf.customer_id = d.customer_id
  LEFT JOIN ge ON ge.customer_id = d.customer_id
  LEFT JOIN val ON val.customer_id = d.customer_id
  LEFT JOIN mem ON mem.customer_id = d.customer_id
  LEFT JOIN kocx kx ON kx.cix = d.customer_id
  LEFT JOIN cost c ON c.code = fr.channel_code
),
snt AS (
  SELECT customer_id, occurred_at FROM exw
  WHERE event_type = 'message_sent' AND occurred_at >= $s_us
),
rcv AS (
  SELECT customer_id, occurred_at FROM exw
  WHERE event_type = 'message_received' AND occurred_at >= $s_us AND occurred_at < $e_us
),
resp AS (
  SELECT r.customer_id,
    CASE WHEN s.occurred_at IS NOT NULL
          AND s.occurred_at <= r.occurred_at + $within_us
      THEN (s.occurred_at - r.occurred_at) / 60000000.0 END AS minutes
  FROM rcv r ASOF LEFT JOIN snt s
    ON r.customer_id = s.customer_id AND s.occurred_at >= r.occurred_at
)"""  # noqa: S608 - constants of this module only
FACTS = _SCANS

# per group: column → SQL aggregate over pc
SUMS = (
    "diverted",
    "reached",
    "reached_diverted",
    "cost_fen",
    "ret_cohort",
    "retained",
    "csat_sum",
    "csat_n",
    "friend_start",
    "churned",
    "friend_period",
    "interacted",
    "gmv",
    "buyer",
    "repurchaser",
    "referred",
    "friend_end",
    "value_fen",
    "active_member",
    "in_group",
    "koc_published",
    "koc_brought",
)

# KPI → (numerator column, denominator column or None); the response time is apart
SIDES: dict[str, tuple[str, str | None]] = {
    "diverted_customers": ("diverted", None),
    "diversion_rate": ("reached_diverted", "reached"),
    "cost_per_diverted": ("cost_fen", "diverted"),
    "retention_rate": ("retained", "ret_cohort"),
    "satisfaction": ("csat_sum", "csat_n"),
    "churn_rate": ("churned", "friend_start"),
    "interaction_rate": ("interacted", "friend_period"),
    "gmv": ("gmv", None),
    "referred_customers": ("referred", None),
    "koc_content_published": ("koc_published", None),
    "koc_customers_brought": ("koc_brought", None),
    "repurchase_rate": ("repurchaser", "buyer"),
    "value_365": ("value_fen", "friend_end"),
    "active_members": ("active_member", None),
    "group_participation_rate": ("in_group", "friend_period"),
}


# the columns of ``pc`` that read the period features (``pfa``) or the orders (``oxa``);
# friendship and groups (``exh``) are read by nearly every column and always loaded
_FROM_PFA = frozenset({"csat_sum", "csat_n", "churned", "interacted", "referred", "active_member"})
_FROM_OXA = frozenset({"gmv", "buyer", "repurchaser", "value_fen"})


def loads_for(kpi: str, group_by: str | None) -> frozenset[str]:
    """The fact loads (``LOADS``) a drill-down of ``kpi`` reads, either side, in ``group_by``."""
    need = {"exh"}
    if kpi == "guide_response_minutes":
        return frozenset({"exh", "exw"})
    for column in SIDES[kpi]:
        if column in _FROM_PFA:
            need.add("pfa")
        if column in _FROM_OXA:
            need.add("oxa")
    return frozenset(need)


def grouping(group_by: str | None) -> str:
    """The ``grp`` CTE: (customer_id, g) for the grouping (several rows per customer for
    the multi-valued groupings ``group`` and ``sop``)."""
    if group_by is None:
        return "grp AS (SELECT cix AS customer_id, 'all' AS g FROM dim)"
    if group_by in ("region", "store", "guide"):
        # group_by is one of the three column names just checked
        return f"grp AS (SELECT cix AS customer_id, coalesce({group_by}, '(none)') AS g FROM dim)"  # noqa: S608
    if group_by == "channel_code":
        return "grp AS (SELECT customer_id, coalesce(channel_code, '(none)') AS g FROM pc)"
    if group_by == "group":
        members = """
  SELECT DISTINCT customer_id, prop AS g
  FROM exh WHERE event_type = 'group_joined' AND occurred_at < $e_us"""
    elif group_by == "sop":
        members = "SELECT DISTINCT cix AS customer_id, sop_id AS g FROM sopm"
    else:
        raise ValueError(group_by)
    return f"""gm AS ({members}),
grp AS (
  SELECT d.cix AS customer_id, coalesce(gm.g, '(none)') AS g
  FROM dim d LEFT JOIN gm ON gm.customer_id = d.cix
)"""  # noqa: S608 - fixed fragments


def overview_sql(group_by: str | None) -> str:
    sums = ",\n  ".join(f"sum(pc.{c}) AS {c}" for c in SUMS)
    return f"""WITH {FACTS},
{grouping(group_by)},
agg AS (
  SELECT grp.g,
  count(*) AS customers,
  {sums}
  FROM pc JOIN grp ON grp.customer_id = pc.customer_id
  GROUP BY grp.g
),
rt AS (
  SELECT grp.g, count(*) AS received, count(resp.minutes) AS answered,
    median(resp.minutes) AS median_minutes
  FROM resp JOIN grp ON grp.customer_id = resp.customer_id
  GROUP BY grp.g
)
SELECT agg.*, coalesce(rt.received, 0) AS received, coalesce(rt.answered, 0) AS answered,
  rt.median_minutes
FROM agg LEFT JOIN rt ON rt.g = agg.g
ORDER BY agg.g"""  # noqa: S608 - fixed fragments


def drill_sql(group_by: str | None, condition: str) -> str:
    """Customers of group ``$g`` meeting ``condition`` (a trusted SQL fragment over ``pc``
    and ``rs``), one page, and how many there are."""
    return f"""WITH {FACTS},
{grouping(group_by)},
rs AS (
  SELECT customer_id, count(*) AS received, count(minutes) AS answered
  FROM resp GROUP BY customer_id
),
hit AS (
  SELECT DISTINCT pc.customer_id
  FROM pc JOIN grp ON grp.customer_id = pc.customer_id
  LEFT JOIN rs ON rs.customer_id = pc.customer_id
  WHERE grp.g = $g AND ({condition})
)
SELECT d.customer_id, count(*) OVER () AS total
FROM hit JOIN dim d ON d.cix = hit.customer_id
ORDER BY d.customer_id LIMIT $limit OFFSET $offset"""  # noqa: S608 - fixed fragments
