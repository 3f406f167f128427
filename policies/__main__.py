"""Samarth guardrails: `pulumi preview --policy-pack policies` (rules and their reasons in rules.py)."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The policy host may run this file by path, which does not put its directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rules

rules.keep_secret_markers()

PolicyPack(
    name="samarth-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=rules.POLICIES,
)
