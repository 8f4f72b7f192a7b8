"""One place where data loaders and tools report what is wrong with a data set.

    problems = DataProblems(strict=False)
    problems.record('missing_image', path, 'listed in labels.csv row 12')
    ...
    if problems: log(problems.summary())

Default (strict=False): every problem is kept, the caller skips the item, and `summary()` lists
them all with counts by kind at the end. strict=True raises `DataError` at the first problem.

Kinds in use (free-form strings, keep them short and stable): 'missing_file', 'missing_image',
'bad_row', 'bad_header', 'unreadable_image', 'bad_image_size', 'unknown_mask_colour',
'missing_mask', 'truncated_bag', 'bad_meta'.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path


class UnusableDataset(ValueError):
    """A data set with nothing usable in it (wrong folder, no readable images or masks)."""


class DataError(ValueError):
    """A data-set problem in strict mode. `.problem` is the Problem that triggered it."""

    def __init__(self, problem: 'Problem'):
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str
    detail: str = ''

    def __str__(self) -> str:
        return f'{self.kind}: {self.path}' + (f' ({self.detail})' if self.detail else '')


class DataProblems:
    """Collector of data problems (see module doc)."""

    def __init__(self, strict: bool = False, source: str = ''):
        self.strict = strict
        self.source = source
        self.items: list[Problem] = []

    def record(self, kind: str, path, detail: str = '') -> Problem:
        p = Problem(str(kind), str(Path(path)) if path is not None else '', str(detail))
        self.items.append(p)
        if self.strict:
            raise DataError(p)
        return p

    def extend(self, other: 'DataProblems') -> None:
        for p in other.items:
            self.record(p.kind, p.path, p.detail)

    def counts(self) -> dict:
        return dict(Counter(p.kind for p in self.items))

    def by_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.items if p.kind == kind]

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self):
        return iter(self.items)

    def summary(self, limit: int | None = None) -> str:
        """Text: a count line per kind, then every problem (or the first `limit`)."""
        head = f'data problems{" in " + self.source if self.source else ""}'
        if not self.items:
            return f'{head}: none'
        counts = ', '.join(f'{k}: {n}' for k, n in sorted(self.counts().items()))
        lines = [f'{head}: {len(self.items)} ({counts})']
        shown = self.items if limit is None else self.items[:limit]
        lines += [f'  {p}' for p in shown]
        if limit is not None and len(self.items) > limit:
            lines.append(f'  ... and {len(self.items) - limit} more')
        return '\n'.join(lines)

    def __str__(self) -> str:
        return self.summary()
