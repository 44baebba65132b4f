"""SOPs and the task engine. So far the breathing policy (``policy``) and the pure,
set-based day planner (``planner``); the store, triggers and edges come later."""

from siyu.sop.planner import (
    NEVER,
    REASONS,
    STATUSES,
    Candidates,
    CustomerState,
    Decisions,
    History,
    Reason,
    Simulation,
    epoch,
    plan,
    simulate,
)
from siyu.sop.policy import CHANNELS, KINDS, BreathingPolicy, Caps, MassQuota

__all__ = [
    "CHANNELS",
    "KINDS",
    "NEVER",
    "REASONS",
    "STATUSES",
    "BreathingPolicy",
    "Candidates",
    "Caps",
    "CustomerState",
    "Decisions",
    "History",
    "MassQuota",
    "Reason",
    "Simulation",
    "epoch",
    "plan",
    "simulate",
]
