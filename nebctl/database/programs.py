"""Store operations on the external programs running for nebctl (``running_programs``).

Mixed into ``Store``. ``controller.applying`` records each program an exec driver or a hook starts during an
apply and forgets it when it ends; ``controller.reaping`` reads the ones left by a dead nebctl.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from nebctl.database.models import RunningProgram
from nebctl.database.operating import Operations, table
from nebctl.database.records import RunningProgramRecord

_programs = table(RunningProgram)


class ProgramOperations(Operations):
    def record_program(self, program: RunningProgramRecord) -> int:
        """Record a program that has just started; returns the id to ``forget_program`` it with."""
        values = {
            "host": program.host,
            "boot_id": program.boot_id,
            "pgid": program.pgid,
            "leader_started": program.leader_started,
            "owner_pid": program.owner_pid,
            "owner_started": program.owner_started,
            "label": program.label[:255],
            "started_at": self._now(),
        }
        with self._write() as connection:
            result = connection.execute(insert(_programs).values(values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def forget_program(self, program_id: int) -> None:
        with self._write() as connection:
            connection.execute(delete(_programs).where(_programs.c.id == program_id))

    def running_programs(self, host: str) -> list[RunningProgramRecord]:
        """The programs recorded as running on ``host``, oldest first."""
        query = select(_programs).where(_programs.c.host == host).order_by(_programs.c.id)
        with self._read() as connection:
            return [
                RunningProgramRecord(
                    id=row.id,
                    host=row.host,
                    boot_id=row.boot_id,
                    pgid=row.pgid,
                    leader_started=row.leader_started,
                    owner_pid=row.owner_pid,
                    owner_started=row.owner_started,
                    label=row.label,
                    started_at=row.started_at,
                )
                for row in connection.execute(query)
            ]
