"""Reads inference tables back with two independent readers and prints one JSON document.

Usage: python delta_tables.py TABLE_PATH...

For each table: Python `deltalake` (its schema, rows and commit history) and DuckDB reading the
Parquet files that the Delta log lists as live (replaying add/remove actions of
_delta_log/*.json), with DuckDB's own column types and row count.
"""
import glob
import json
import os
import sys

import duckdb
from deltalake import DeltaTable


def live_files(path):
    files = {}
    for log in sorted(glob.glob(os.path.join(path, "_delta_log", "*.json"))):
        with open(log) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    files[action["add"]["path"]] = True
                elif "remove" in action:
                    files.pop(action["remove"]["path"], None)
    return [os.path.join(path, p) for p in files]


def by_deltalake(path):
    dt = DeltaTable(path)
    table = dt.to_pyarrow_table()
    rows = table.to_pylist()
    for r in rows:
        for k, v in list(r.items()):
            if hasattr(v, "isoformat"):
                r[k] = v.isoformat()
    return {
        "version": dt.version(),
        "columns": [[f.name, str(f.type)] for f in table.schema],
        "rows": rows,
        "operations": [h.get("operation") for h in dt.history()],
    }


def by_duckdb(path):
    files = live_files(path)
    con = duckdb.connect()
    rel = con.read_parquet(files, union_by_name=True)
    return {
        "files": len(files),
        "columns": [[n, str(t)] for n, t in zip(rel.columns, rel.types)],
        "count": rel.aggregate("count(*)").fetchall()[0][0],
    }


out = {}
for path in sys.argv[1:]:
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        out[path] = None
        continue
    out[path] = {"deltalake": by_deltalake(path), "duckdb": by_duckdb(path)}
print(json.dumps(out, default=str))
