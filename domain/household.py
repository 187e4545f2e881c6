"""The Household aggregate: one assistance chain per household, at most one open case."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import CaseAlreadyOpenError, CaseWorkError
from domain.provenance import Provenance

__all__ = ["Household", "HouseholdNotFoundError"]

_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/household")


class Household(Aggregate):
    """Index of a household's cases (一户一条救助链); saved in the same save() as a case."""

    class Event(Aggregate.Event):
        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, Household)
            self.apply_to(aggregate)

        def apply_to(self, household: Household) -> None:
            """Evolve the household's chain."""

    class Registered(Event, Aggregate.Created):
        """The household's first case opened: its chain begins."""

        household_id: str

        def apply_to(self, household: Household) -> None:
            household.household_id = self.household_id
            household.case_ids = []
            household.open_case_id = None

    class CaseOpened(Event):
        """A case opened for the household."""

        case_id: UUID

        def apply_to(self, household: Household) -> None:
            household.case_ids.append(self.case_id)
            household.open_case_id = self.case_id

    class CaseClosed(Event):
        """The household's open case closed; another may open."""

        case_id: UUID

        def apply_to(self, household: Household) -> None:
            household.open_case_id = None

    class PersonalDataErased(Event):
        """The household's personal data was erased: its data key is destroyed (PIPL/GDPR)."""

        household_id: str
        actor: str
        role: str
        reason: str
        occurred_at: datetime
        causation_id: str
        correlation_id: str

        def apply_to(self, household: Household) -> None:
            household.personal_data_erased_at = self.occurred_at

    if TYPE_CHECKING:  # set by Registered
        household_id: str
        case_ids: list[UUID]
        open_case_id: UUID | None
        personal_data_erased_at: datetime  # set by PersonalDataErased

    @staticmethod
    def id_for(household_id: str) -> UUID:
        """The deterministic aggregate id of a household's chain."""
        return uuid5(_NAMESPACE, household_id)

    @classmethod
    def register(cls, household_id: str) -> Household:
        """Start the chain of a household seen for the first time."""
        return cls._create(
            Household.Registered, id=cls.id_for(household_id), household_id=household_id
        )

    def open_case(self, case_id: UUID) -> None:
        """Record a newly opened case; refused while another case is open."""
        if self.open_case_id is not None:
            raise CaseAlreadyOpenError(self.household_id, self.open_case_id)
        self.trigger_event(Household.CaseOpened, case_id=case_id)

    def close_case(self, case_id: UUID) -> None:
        """Record that the open case closed."""
        if self.open_case_id == case_id:
            self.trigger_event(Household.CaseClosed, case_id=case_id)

    def erase_personal_data(self, *, by: Provenance) -> None:
        """Record the erasure of the household's personal data (the reason is the legal basis)."""
        self.trigger_event(
            Household.PersonalDataErased, household_id=self.household_id, **by.event_fields()
        )


class HouseholdNotFoundError(CaseWorkError, LookupError):
    """No household has this registry number."""

    def __init__(self, household_id: str) -> None:
        self.household_id = household_id
        super().__init__(f"household {household_id} not found")
