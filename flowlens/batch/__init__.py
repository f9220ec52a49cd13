"""Archives of captures: discover, one task per capture, a Parquet store, a local pool or Dask."""
