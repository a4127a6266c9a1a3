"""iptables helpers: our own chains, single rules, and whole batches through iptables-restore.

One `iptables` call costs a few milliseconds; thousands of Service rules go
through `iptables-restore --noflush` in one call instead (`RestoreBatch`).
In such a batch, declaring a chain (`:NAME - [0:0]`) creates it or flushes
it, so a chain can be rewritten whole and atomically; undeclared chains and
built-in chains are left as they are. Every chain kapal owns starts with
`KAPAL-`; `delete_chains(prefix)` removes them (and the jumps into them).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kapal.errors import FailedPrecondition, Invalid, KapalError, NotFound

TABLES = ("filter", "nat", "mangle", "raw")
BUILTIN_CHAINS = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"})
_SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"


def _quote(arg: str) -> str:
    """Quote one argument the way iptables-restore's tokenizer reads it (double quotes only)."""
    if arg and not any(c.isspace() or c in "\"'\\" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_rule(line: str) -> list[str]:
    """Split an `iptables -S` line into arguments (it quotes with double quotes, like the shell)."""
    return shlex.split(line)


@dataclass
class RestoreBatch:
    """Rules for one `iptables-restore --noflush` call, grouped per table in the order given."""

    _chains: dict[str, list[str]] = field(default_factory=dict)
    _lines: dict[str, list[str]] = field(default_factory=dict)

    def _table(self, table: str) -> list[str]:
        if table not in TABLES:
            raise Invalid(f"unknown iptables table {table!r} (one of {', '.join(TABLES)})")
        self._chains.setdefault(table, [])
        return self._lines.setdefault(table, [])

    def chain(self, table: str, chain: str) -> RestoreBatch:
        """Declare `chain`: created when missing, emptied when present (its rules follow)."""
        self._table(table)
        if chain in BUILTIN_CHAINS:
            raise Invalid(f"{chain} is a built-in chain; flush it explicitly if you really mean to")
        if chain not in self._chains[table]:
            self._chains[table].append(chain)
        return self

    def append(self, table: str, chain: str, *args: str) -> RestoreBatch:
        self._table(table).append(" ".join(["-A", chain, *map(_quote, args)]))
        return self

    def insert(self, table: str, chain: str, *args: str) -> RestoreBatch:
        self._table(table).append(" ".join(["-I", chain, *map(_quote, args)]))
        return self

    def delete(self, table: str, chain: str, *args: str) -> RestoreBatch:
        """Delete a rule (it must exist, or the whole batch fails)."""
        self._table(table).append(" ".join(["-D", chain, *map(_quote, args)]))
        return self

    def delete_chain(self, table: str, chain: str) -> RestoreBatch:
        """Remove a chain: it is declared (so flushed) in this batch, then deleted."""
        self.chain(table, chain)
        self._table(table).append(f"-X {chain}")
        return self

    def __bool__(self) -> bool:
        return any(self._chains.values()) or any(self._lines.values())

    def render(self) -> str:
        out: list[str] = []
        for table in self._lines:
            out.append(f"*{table}")
            out += [f":{c} - [0:0]" for c in self._chains[table]]
            out += self._lines[table]
            out.append("COMMIT")
        return "\n".join(out) + "\n"


class Iptables:
    """iptables (family 4) or ip6tables (family 6) for one process; every call waits for the xtables lock."""

    def __init__(self, family: int = 4) -> None:
        if family not in (4, 6):
            raise Invalid(f"IP family must be 4 or 6, not {family}")
        prefix = "iptables" if family == 4 else "ip6tables"
        self.family = family
        self._binary = self._find(prefix)
        self._restore = self._find(f"{prefix}-restore")
        self._save = self._find(f"{prefix}-save")

    @staticmethod
    def _find(name: str) -> str:
        found = shutil.which(name, path=_SBIN_PATH + ":" + os.environ.get("PATH", ""))
        if found is None:
            raise FailedPrecondition(f"{name} is not installed; install the iptables package (make deps does)")
        return found

    def _run(self, argv: Sequence[str], *, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)

    def run(self, *args: str) -> str:
        """Run one iptables command; fail with its own message."""
        proc = self._run([self._binary, "-w", *args])
        if proc.returncode != 0:
            raise KapalError(f"iptables {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    # ---- chains -------------------------------------------------------------------------------------

    def has_chain(self, table: str, chain: str) -> bool:
        return self._run([self._binary, "-w", "-t", table, "-S", chain]).returncode == 0

    def ensure_chain(self, table: str, chain: str) -> bool:
        """Create `chain` when missing; True when created. Safe against a concurrent creator."""
        if self.has_chain(table, chain):
            return False
        proc = self._run([self._binary, "-w", "-t", table, "-N", chain])
        if proc.returncode != 0 and not self.has_chain(table, chain):
            raise KapalError(f"iptables -t {table} -N {chain}: {proc.stderr.strip()}")
        return proc.returncode == 0

    def rules(self, table: str, chain: str) -> list[list[str]]:
        """The rules of `chain` as argument lists (without '-A CHAIN'); NotFound when the chain is missing."""
        proc = self._run([self._binary, "-w", "-t", table, "-S", chain])
        if proc.returncode != 0:
            raise NotFound(f"iptables chain {chain} does not exist in table {table}")
        out = []
        for line in proc.stdout.splitlines():
            args = _split_rule(line)
            if args[:2] == ["-A", chain]:
                out.append(args[2:])
        return out

    def chains(self, table: str, prefix: str = "") -> list[str]:
        """User chains of `table` whose names start with `prefix`."""
        proc = self._run([self._save, "-t", table])
        if proc.returncode != 0:
            raise KapalError(f"{self._save} -t {table}: {proc.stderr.strip()}")
        names = [line[1:].split()[0] for line in proc.stdout.splitlines() if line.startswith(":")]
        return [n for n in names if n.startswith(prefix) and n not in BUILTIN_CHAINS]

    def flush_chain(self, table: str, chain: str) -> None:
        if self.has_chain(table, chain):
            self.run("-t", table, "-F", chain)

    def delete_chain(self, table: str, chain: str) -> bool:
        """Remove every jump into `chain` in `table`, then flush and delete it; False when it did not exist."""
        return bool(self.delete_chains(chain, tables=(table,), exact=True))

    def delete_chains(self, prefix: str, tables: Iterable[str] = TABLES, exact: bool = False) -> list[str]:
        """Delete all chains named `prefix*` (or exactly `prefix`) and the rules that jump to them, in one
        restore per table. Returns 'table/chain' for each deleted chain."""
        deleted: list[str] = []
        for table in tables:
            proc = self._run([self._save, "-t", table])
            if proc.returncode != 0:
                continue  # table not available on this kernel
            lines = proc.stdout.splitlines()
            doomed = [
                line[1:].split()[0] for line in lines
                if line.startswith(":") and (line[1:].split()[0] == prefix if exact else line[1:].startswith(prefix))
            ]
            doomed = [c for c in doomed if c not in BUILTIN_CHAINS]
            if not doomed:
                continue
            batch = RestoreBatch()
            for line in lines:
                if not line.startswith("-A "):
                    continue
                args = _split_rule(line)
                owner, target = args[1], _jump_target(args)
                if target in doomed and owner not in doomed:
                    batch.delete(table, owner, *args[2:])
            for chain in doomed:
                batch.delete_chain(table, chain)
            self.restore(batch)
            deleted += [f"{table}/{c}" for c in doomed]
        return deleted

    # ---- rules --------------------------------------------------------------------------------------

    def has_rule(self, table: str, chain: str, *rule: str) -> bool:
        return self._run([self._binary, "-w", "-t", table, "-C", chain, *rule]).returncode == 0

    def ensure_rule(self, table: str, chain: str, *rule: str, first: bool = False) -> bool:
        """Append (or insert first) `rule` when it is not there; True when added."""
        if self.has_rule(table, chain, *rule):
            return False
        self.run("-t", table, "-I" if first else "-A", chain, *rule)
        return True

    def delete_rule(self, table: str, chain: str, *rule: str) -> bool:
        """Delete `rule` (every copy of it); False when it was not there."""
        removed = False
        while self.has_rule(table, chain, *rule):
            self.run("-t", table, "-D", chain, *rule)
            removed = True
        return removed

    def ensure_jump(self, table: str, from_chain: str, to_chain: str, *match: str, first: bool = True) -> bool:
        """Create `to_chain` and a rule `from_chain ... -j to_chain` (first in the chain by default)."""
        self.ensure_chain(table, to_chain)
        return self.ensure_rule(table, from_chain, *match, "-j", to_chain, first=first)

    # ---- batches ------------------------------------------------------------------------------------

    def restore(self, batch: RestoreBatch | str, *, noflush: bool = True) -> None:
        """Apply a batch with one `iptables-restore` (all tables of it atomically, table by table)."""
        text = batch.render() if isinstance(batch, RestoreBatch) else batch
        if not text.strip():
            return
        argv = [self._restore, "-w"] + (["--noflush"] if noflush else [])
        proc = self._run(argv, input=text)
        if proc.returncode != 0:
            raise KapalError(f"iptables-restore failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def save(self, table: str | None = None) -> str:
        proc = self._run([self._save] + (["-t", table] if table else []))
        if proc.returncode != 0:
            raise KapalError(f"{self._save}: {proc.stderr.strip()}")
        return proc.stdout


def _jump_target(args: list[str]) -> str | None:
    for flag in ("-j", "--jump", "-g", "--goto"):
        if flag in args:
            i = args.index(flag)
            if i + 1 < len(args):
                return args[i + 1]
    return None
