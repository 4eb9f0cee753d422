"""Cron schedules: parse once, compute the next firing. Pure (time in, time out), UTC.

Accepted forms:
  `*/N`                   every N seconds, counted from when the entry was created
  5 fields                minute hour day month weekday (classic cron)
  6 fields                second minute hour day month weekday (seconds first)
  7 fields                as 6, plus a year
croniter reads a 6th field as seconds *last* unless `second_at_beginning=True`, and silently
misreads a seconds-first expression whose fields happen to be in range (the stack notes show
`0 5 9 * * 1` firing at 05:00:01 on the 9th). So the flag is passed whenever there are 6 or 7
fields, both to validate and to compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from croniter import croniter

from proto.errors import InvalidRequest

# A schedule that never fires within this horizon is refused (e.g. February 30th).
_HORIZON_MS = 5 * 366 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Schedule:
    text: str
    interval_ms: int  # > 0 for `*/N`, else 0
    fields: int  # 5, 6 or 7 for cron expressions

    def next_after(self, after_ms: int) -> int:
        """The first firing strictly after `after_ms` (epoch ms)."""
        if self.interval_ms:
            return after_ms + self.interval_ms
        it = croniter(self.text, after_ms / 1000.0, second_at_beginning=self.fields >= 6)
        nxt: float = it.get_next(float)
        return round(nxt * 1000)


def parse_schedule(text: str, now_ms: int) -> Schedule:
    """Validate a schedule; raise `InvalidRequest` naming the field if it is not usable."""
    s = " ".join(text.split())
    if s.startswith("*/") and " " not in s:
        n = s[2:]
        if not n.isdigit() or int(n) <= 0 or int(n) > 366 * 24 * 3600:
            raise InvalidRequest(f"field 'schedule' has a bad interval: {text!r}")
        return Schedule(s, int(n) * 1000, 0)
    nfields = len(s.split(" "))
    if nfields not in (5, 6, 7):
        raise InvalidRequest(
            f"field 'schedule' must be '*/N' or a cron expression of 5, 6 or 7 fields: {text!r}"
        )
    sched = Schedule(s, 0, nfields)
    try:
        if not croniter.is_valid(s, second_at_beginning=nfields >= 6):
            raise ValueError("not a valid cron expression")
        nxt = sched.next_after(now_ms)
    except Exception as e:  # croniter raises a family of its own errors
        raise InvalidRequest(f"field 'schedule' is not a valid cron expression: {text!r}") from e
    if nxt - now_ms > _HORIZON_MS:
        raise InvalidRequest(f"field 'schedule' never fires: {text!r}")
    return sched
