"""What the projector tells the owner of a person (the `person-changes` repartition topic, keyed by person id).

One record carries everything one projector batch (or one owner's batch) says about one person: the events
and management commands to fold, the identity facts, the merges that absorb it, the persons whose mapping
proves it a stand-in, the states of persons handed over to it, and whether its counts must be recounted.
Everything in it folds as a join (or is idempotent), so a record delivered twice changes nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.events import EnrichedEvent
from schemas.identity import PersonIdentity, PersonMerge
from schemas.user_commands import UserCommand


class Absorbed(BaseModel):
    """A person merged into the record's person: its whole reducer state (projections/profiles.py JSON)."""

    model_config = ConfigDict(frozen=True)

    person_id: str
    state: str


class PersonChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_id: str
    events: list[EnrichedEvent] = []  # screened events to fold into the profile
    commands: list[UserCommand] = []  # management API creates and updates
    identities: list[PersonIdentity] = []
    merges: list[PersonMerge] = []  # merges of this person (from_person) into another
    stand_in_for: list[str] = []  # persons whose mapping shows this id was only a stand-in for them
    absorbed: list[Absorbed] = []  # states handed over by persons merged into this one
    recount: bool = False  # events or sessions of the person changed: recount them
