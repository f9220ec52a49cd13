"""Records as pandas DataFrames, with the columns in the order the commands print them."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..analyzers.anomalies.detector import ANOMALY_FIELDS
from ..core.connections import RECORD_FIELDS

__all__ = ["records_frame"]

_COLUMNS: dict[str, Sequence[str]] = {"connections": RECORD_FIELDS, "findings": ANOMALY_FIELDS}


def records_frame(rows: list[dict], what: str) -> pd.DataFrame:
    """One row per record; `what` (connections, findings, rtt) fixes the columns' order, so an
    empty table still has them."""
    columns = list(_COLUMNS.get(what) or (rows[0].keys() if rows else ()))
    return pd.DataFrame.from_records(rows, columns=columns)
