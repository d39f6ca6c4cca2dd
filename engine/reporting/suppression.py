"""Small-cell suppression: no count below 5 is published, and no published total lets one be recomputed.

The rule (docs/monitoring.md, "Schutz kleiner Zahlen"):

1. Primary suppression: every cell that counts 1 to 4 cases is shown as "<5". A zero is shown as 0: it
   describes nobody, and it is known to be zero anyway wherever a total shows it.
2. Complementary suppression: a table is a set of cells plus the linear relations a reader knows between
   them (a row of cells adds up to its total; months add up to the quarter; this month's stock is last
   month's stock plus new minus closed cases; a total shared by several tables is one cell). As long as a
   relation contains exactly one suppressed cell, the smallest published cell of that relation (greater
   than zero, not a cell that must stay published) is suppressed as well and shown as "x".
3. Audit: the relations are solved for the suppressed cells (Gaussian elimination). If a primary cell is
   still exactly determined by the published cells (a chain of relations, not just one line), another
   complement is taken from one of its relations, and the audit runs again, until no primary cell can be
   recomputed. Every step suppresses one more cell, so it ends.
4. Release: the steps above are greedy and may hide more than needed; each complement is published again
   (the largest first) if the audit still finds no primary cell determined without it.

What it does not promise: a suppressed cell may still be narrowed to an interval (that is what "<5"
says anyway), and the relations between different pages (another year) are not part of the audit; the
figures page builds one system per year with months, quarters and the year in it, so that switching the
period view never shows two differently protected versions of the same numbers.

No database here: `protect(values, relations)` works on plain dicts, so a hand-made table tests it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

THRESHOLD = 5
SHOWN, PRIMARY, SECONDARY = "shown", "primary", "secondary"
SMALL, HIDDEN = "<5", "x"
_P = 2**61 - 1  # a prime: ranks are computed in GF(p); with small integer coefficients they equal the rational ones

Cell = Hashable
Relation = Mapping[Cell, int]  # sum(coefficient * value) == 0


@dataclass
class Protected:
    """Cell values with their status: shown, primary ("<5") or secondary ("x")."""

    values: dict[Cell, int]
    status: dict[Cell, str]

    def shown(self, cell: Cell) -> bool:
        return self.status.get(cell, SHOWN) == SHOWN

    def value(self, cell: Cell) -> int | None:
        """The published value, or None when it is suppressed."""
        return self.values.get(cell, 0) if self.shown(cell) else None

    def text(self, cell: Cell) -> str:
        state = self.status.get(cell, SHOWN)
        if state == PRIMARY:
            return SMALL
        if state == SECONDARY:
            return HIDDEN
        return str(self.values.get(cell, 0))

    @property
    def suppressed(self) -> set[Cell]:
        return {c for c, s in self.status.items() if s != SHOWN}


def protect(values: Mapping[Cell, int], relations: Iterable[Relation], *, threshold: int = THRESHOLD,
            fixed: Iterable[Cell] = (), cost: Callable[[Cell], float] | None = None) -> Protected:
    """Suppress small cells and enough others that no small cell can be recomputed from the relations.

    `fixed`: cells that must never be suppressed as a complement (e.g. published on another page); they
    are still suppressed when they are small themselves. `cost(cell)`: which complement to prefer (the
    cheapest); by default the smallest value.
    """
    values = dict(values)
    relations = [{c: k for c, k in r.items() if k} for r in relations]
    for relation in relations:
        for cell in relation:
            values.setdefault(cell, 0)
        if sum(k * values[c] for c, k in relation.items()) != 0:
            raise ValueError(f"relation does not hold: {relation}")
    fixed = set(fixed)
    cost = cost or (lambda cell: values[cell])
    status = {c: (PRIMARY if 0 < v < threshold else SHOWN) for c, v in values.items()}
    primary = {c for c, s in status.items() if s == PRIMARY}
    touching: dict[Cell, list[int]] = {}
    for i, relation in enumerate(relations):
        for cell in relation:
            touching.setdefault(cell, []).append(i)

    def unknown(relation: Relation) -> list[Cell]:
        return [c for c in relation if status[c] != SHOWN]

    def complement(relation: Relation, *, allow_zero: bool = False) -> bool:
        candidates = [c for c in relation if status[c] == SHOWN and c not in fixed and (values[c] > 0 or allow_zero)]
        if not candidates:
            return False
        chosen = min(candidates, key=lambda c: (cost(c), repr(c)))
        status[chosen] = SECONDARY
        return True

    def reachable(cell: Cell) -> Iterable[Relation]:
        """The relations of `cell`, then those linked to them through other suppressed cells (nearest first):
        where a complement can break the chain that determines `cell`."""
        seen_cells, seen = {cell}, set()
        frontier = [cell]
        while frontier:
            level = sorted({i for c in frontier for i in touching.get(c, ())} - seen)
            seen.update(level)
            yield from sorted((relations[i] for i in level), key=lambda r: len(unknown(r)))
            frontier = [c for i in level for c in relations[i] if status[c] != SHOWN and c not in seen_cells]
            seen_cells.update(frontier)

    while True:
        progress = False
        for relation in relations:
            if len(unknown(relation)) == 1:
                progress |= complement(relation) or complement(relation, allow_zero=True)
        if progress:
            continue
        exposed = determined({c for c, s in status.items() if s != SHOWN}, relations) & primary
        if not exposed:
            break
        for cell in sorted(exposed, key=repr):
            progress |= any(complement(r) or complement(r, allow_zero=True) for r in reachable(cell))
        if not progress:  # only cells that must stay published are left: nothing more can be done here
            log.warning("small cells stay recomputable from published cells", extra={"cells": repr(exposed)})
            break
    _release(values, status, relations, primary, cost, touching)
    return Protected(values, status)


def _release(values, status, relations, primary, cost, touching) -> None:
    """Publish again every complement that is not needed: the greedy steps above hide more than necessary
    in tables with many small cells. Most valuable first; a cell stays published if the audit (of the
    suppressed cells linked to it) still finds no primary cell determined."""
    chosen = sorted((c for c, s in status.items() if s == SECONDARY), key=lambda c: (-cost(c), repr(c)))
    for cell in chosen:
        status[cell] = SHOWN
        cells, linked = _linked(cell, status, relations, touching)
        if determined(cells, linked) & primary:
            status[cell] = SECONDARY


def _linked(cell, status, relations, touching) -> tuple[set, list]:
    """The suppressed cells connected to `cell` through relations, and those relations."""
    seen_relations: set[int] = set()
    cells: set = set()
    queue = list(touching.get(cell, ()))
    while queue:
        i = queue.pop()
        if i in seen_relations:
            continue
        seen_relations.add(i)
        for other in relations[i]:
            if status[other] != SHOWN and other not in cells:
                cells.add(other)
                queue.extend(touching.get(other, ()))
    return cells, [relations[i] for i in sorted(seen_relations)]


def determined(unknowns: set[Cell], relations: Iterable[Relation]) -> set[Cell]:
    """The unknown cells whose value follows from the relations and the known cells.

    A cell x is determined iff the unit vector of x lies in the row space of the relations restricted to
    the unknown cells. Reduced row echelon form (over GF(p)); a pivot row with no other entry is such a
    unit vector.
    """
    order = {c: i for i, c in enumerate(sorted(unknowns, key=repr))}
    cells = sorted(unknowns, key=repr)
    pivots: dict[int, dict[int, int]] = {}  # pivot column -> its row (coefficient 1 at the pivot)
    holders: dict[int, set[int]] = {}  # column -> pivot columns whose rows contain it
    for relation in relations:
        row = {order[c]: k % _P for c, k in relation.items() if c in order and k % _P}
        if not row:
            continue
        for col in [c for c in row if c in pivots]:
            factor = row.pop(col, 0)
            if factor:
                _subtract(row, pivots[col], factor, skip=col)
        if not row:
            continue
        col = min(row)
        inverse = pow(row[col], _P - 2, _P)
        row = {c: v * inverse % _P for c, v in row.items()}
        for other in list(holders.get(col, ())):  # keep the form reduced: clear `col` from the other rows
            other_row = pivots[other]
            factor = other_row.pop(col)
            _subtract(other_row, row, factor, skip=col, holders=holders, owner=other)
        holders.pop(col, None)
        pivots[col] = row
        for c in row:
            if c != col:
                holders.setdefault(c, set()).add(col)
    return {cells[col] for col, row in pivots.items() if len(row) == 1}


def _subtract(row: dict[int, int], pivot_row: dict[int, int], factor: int, *, skip: int,
              holders: dict[int, set[int]] | None = None, owner: int | None = None) -> None:
    for c, v in pivot_row.items():
        if c == skip:
            continue
        new = (row.get(c, 0) - factor * v) % _P
        if new:
            row[c] = new
            if holders is not None:
                holders.setdefault(c, set()).add(owner)
        else:
            row.pop(c, None)
            if holders is not None:
                holders.get(c, set()).discard(owner)
