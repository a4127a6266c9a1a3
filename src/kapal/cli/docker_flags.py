"""The docker verbs' command lines, parsed without argparse on the common path.

Importing argparse (and `re`, `enum`, `gettext` with it) and building a parser costs ~10 ms of every
`kapal run`, more than a third of what the client does. FlagParser takes the same `add_argument` calls and
parses the plain cases itself: exact `--flag`, `--flag=value`, `--flag value`, clustered short flags
(`-it`, `-p80:80`) and then the positionals. Help, errors and everything else (abbreviated flags, `--`,
flags after positionals, values that start with `-`, `=` in a short cluster) go to argparse, built from the
same calls, so what users see and what the unusual cases mean stay argparse's.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

REMAINDER = "..."  # argparse.REMAINDER: the rest of the command line, as given


class UsageError(Exception):
    pass


class Namespace:
    """The parsed flags as attributes (argparse.Namespace's role)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class _Flag:
    __slots__ = ("dest", "action", "type", "choices")

    def __init__(self, dest: str, action: str, type: Any, choices: Any) -> None:
        self.dest, self.action, self.type, self.choices = dest, action, type, choices


_MIN_MAX = {None: (1, 1), "?": (0, 1), "*": (0, None), "+": (1, None)}


class FlagParser:
    """argparse.ArgumentParser's add_argument/parse_args for the actions the verbs use (store, store_true,
    append, help; nargs ?, *, + and REMAINDER on positionals)."""

    def __init__(self, prog: str, description: str = "", add_help: bool = True) -> None:
        self.prog = prog
        self.description = description
        self.add_help = add_help
        self._calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self._flags: dict[str, _Flag] = {}
        self._defaults: dict[str, Any] = {}
        self._positionals: list[tuple[str, Any, dict[str, Any]]] = []
        if add_help:
            help_flag = _Flag("help", "help", None, None)
            self._flags["-h"] = self._flags["--help"] = help_flag

    def add_argument(self, *names: str, **kw: Any) -> None:
        unknown = set(kw) - {"action", "default", "type", "choices", "nargs", "dest", "help", "metavar"}
        if unknown:
            raise TypeError(f"FlagParser does not take {sorted(unknown)}")
        self._calls.append((names, kw))
        action = kw.get("action", "store")
        if action not in ("store", "store_true", "append", "help"):
            raise TypeError(f"FlagParser does not take action={action!r}")
        if not names[0].startswith("-"):
            self._positionals.append((names[0], kw.get("nargs"), kw))
            return
        if "nargs" in kw:
            raise TypeError("FlagParser takes nargs on positionals only")
        longs = [n for n in names if n.startswith("--")]
        dest = kw.get("dest") or (longs[0] if longs else names[0]).lstrip("-").replace("-", "_")
        flag = _Flag(dest, action, kw.get("type"), kw.get("choices"))
        for name in names:
            self._flags[name] = flag
        if action == "help":
            return
        default = kw.get("default", False if action == "store_true" else None)
        if isinstance(default, str) and flag.type is not None:
            default = flag.type(default)
        self._defaults[dest] = default

    def parse_args(self, argv: list[str]) -> Namespace:
        values = self._parse_plain(argv)
        if values is None:
            return self._argparse().parse_args(argv)  # type: ignore[return-value]
        return Namespace(**values)

    # ---------------------------------------------------------------- the plain cases

    def _parse_plain(self, argv: list[str]) -> dict[str, Any] | None:
        """The values, or None when argparse must decide (help, errors, anything unusual)."""
        values: dict[str, Any] = {}
        i, n = 0, len(argv)
        while i < n:
            arg = argv[i]
            if arg == "-" or arg == "--" or not arg.startswith("-"):
                break
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                flag = self._flags.get(name)
                if flag is None or flag.action == "help":
                    return None
                i += 1
                if flag.action == "store_true":
                    if eq:
                        return None
                    values[flag.dest] = True
                    continue
                if not eq:
                    if i >= n or argv[i].startswith("-"):
                        return None
                    value = argv[i]
                    i += 1
                if not self._store(flag, value, values):
                    return None
                continue
            if "=" in arg:
                return None
            i += 1
            j = 1
            while j < len(arg):
                flag = self._flags.get("-" + arg[j])
                if flag is None or flag.action == "help":
                    return None
                j += 1
                if flag.action == "store_true":
                    values[flag.dest] = True
                    continue
                if j < len(arg):
                    value, j = arg[j:], len(arg)
                elif i < n and not argv[i].startswith("-"):
                    value = argv[i]
                    i += 1
                else:
                    return None
                if not self._store(flag, value, values):
                    return None
        if not self._assign_positionals(argv[i:], values):
            return None
        for dest, default in self._defaults.items():
            if dest not in values:
                values[dest] = list(default) if isinstance(default, list) else default
        return values

    def _convert(self, flag: _Flag | dict[str, Any], value: str) -> tuple[bool, Any]:
        kind = flag.type if isinstance(flag, _Flag) else flag.get("type")
        choices = flag.choices if isinstance(flag, _Flag) else flag.get("choices")
        if kind is not None:
            try:
                value = kind(value)
            except (TypeError, ValueError):
                return False, None
        if choices is not None and value not in choices:
            return False, None
        return True, value

    def _store(self, flag: _Flag, text: str, values: dict[str, Any]) -> bool:
        ok, value = self._convert(flag, text)
        if not ok:
            return False
        if flag.action == "append":
            values.setdefault(flag.dest, list(self._defaults.get(flag.dest) or [])).append(value)
        else:
            values[flag.dest] = value
        return True

    def _assign_positionals(self, rest: list[str], values: dict[str, Any]) -> bool:
        """argparse's greedy matching of positionals, for arguments that are all plain words."""
        def plain(words: list[str]) -> bool:
            return not any(w == "--" or (w.startswith("-") and w != "-") for w in words)

        if not any(p[1] == REMAINDER for p in self._positionals) and not plain(rest):
            return False
        index = 0
        for k, (dest, nargs, kw) in enumerate(self._positionals):
            if nargs == REMAINDER:
                if index < len(rest) and rest[index] == "--":
                    return False
                values[dest] = rest[index:]
                index = len(rest)
                continue
            low, high = _MIN_MAX[nargs]
            later = sum(_MIN_MAX[p[1]][0] for p in self._positionals[k + 1 :] if p[1] != REMAINDER)
            take = len(rest) - index - later
            if high is not None:
                take = min(take, high)
            if take < low:
                return False
            words = rest[index : index + take]
            if not plain(words):
                return False
            index += take
            converted = []
            for word in words:
                ok, value = self._convert(kw, word)
                if not ok:
                    return False
                converted.append(value)
            if nargs is None:
                values[dest] = converted[0]
            elif nargs == "?":
                default = kw.get("default")
                if converted:
                    values[dest] = converted[0]
                elif isinstance(default, str) and kw.get("type") is not None:
                    values[dest] = kw["type"](default)
                else:
                    values[dest] = default
            else:
                values[dest] = converted if converted or kw.get("default") is None else kw["default"]
        return index == len(rest)

    # ---------------------------------------------------------------- argparse, for everything else

    def _argparse(self) -> argparse.ArgumentParser:
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                raise UsageError(f"{message}\nSee 'kapal {self.prog.split()[-1]} --help'.")

        p = Parser(prog=self.prog, description=self.description, add_help=self.add_help)
        for names, kw in self._calls:
            if kw.get("nargs") == REMAINDER:
                kw = {**kw, "nargs": argparse.REMAINDER}
            p.add_argument(*names, **kw)
        return p
