"""Reports: pure functions from connections to tables, text and figures (pandas, matplotlib)."""
