"""Per-account names for node_exporter's textfiles: `<program>-<client id>.prom`.

Several accounts on one host (dhanfeed-renew@acct1, @acct2, ...) may share the one directory
node_exporter reads; with one name per program they would overwrite each other's figures.
The client id is already every series' label, not a secret.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)


def textfile_name(program: str, client_id: str) -> str:
    """`<program>-<client id>.prom`: the account's own file, named as its metrics' label."""
    return f"{program}-{re.sub(r'[^0-9A-Za-z_.-]', '_', client_id)}.prom"


def _is_accounts(path: Path, client_id: str) -> bool:
    try:
        return f'client_id="{client_id}"' in path.read_text(encoding="utf-8")
    except OSError:
        return False  # none there (the usual case)


def account_textfile(directory: Path, program: str, client_id: str) -> Path:
    """The file to read back: the account's own, or, until its program next writes, the
    `<program>.prom` an older dhanfeed left with this account's figures."""
    path = directory / textfile_name(program, client_id)
    old = directory / f"{program}.prom"
    if not path.exists() and _is_accounts(old, client_id):
        return old
    return path


def retire_single_name_file(directory: Path, program: str, client_id: str) -> None:
    """Remove this account's `<program>.prom` of an older dhanfeed: left beside the new file,
    node_exporter would see its series twice and refuse the directory. Another account's is
    left alone."""
    old = directory / f"{program}.prom"
    if not _is_accounts(old, client_id):
        return
    try:
        old.unlink()
        logger.info("removed %s: the metrics are now in %s", old, textfile_name(program, client_id))
    except OSError:
        pass  # not ours to remove
