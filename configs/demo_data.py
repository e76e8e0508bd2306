"""Create what the configs in this folder expect under ``../data`` (idempotent).

``make run`` runs it, so on a fresh clone every command of the README works:

- ``data/shop.db``: a SQLite database with the ``orders`` table the ``sql-*`` and
  ``schedule`` configs read (two sample rows when the table is new);
- ``data/inbox/orders``, ``data/archive`` (``file-drop-folder.yaml``) and ``data/logs``
  (``file-tail.yaml``), the folders the file connectors watch and write.

Existing data is never changed. ``python configs/demo_data.py [ROOT]`` (default: the
repository root, the folder above this file).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

FOLDERS = ("state", "inbox/orders", "inbox/done", "inbox/error", "archive", "logs")
SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  customer TEXT NOT NULL,
  amount NUMERIC(10, 2),
  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


def create(root: Path) -> list[str]:
    """Create the demo data under ``root/data``; the paths created (empty if all existed)."""
    data = root / "data"
    created = []
    for folder in FOLDERS:
        path = data / folder
        if not path.is_dir():
            path.mkdir(parents=True)
            created.append(str(path))
    shop = data / "shop.db"
    new = not shop.exists()
    with sqlite3.connect(shop) as db:
        db.executescript(SCHEMA)
        if new:
            db.execute("INSERT INTO orders (customer, amount) VALUES ('ann', 12.50), ('bob', 7.25)")
            created.append(str(shop))
    db.close()
    return created


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    for path in create(root):
        print(f"created {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
