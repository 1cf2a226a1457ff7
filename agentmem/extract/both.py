"""The rules and a model together: the rules' facts, and the model's where the rules have none."""

from __future__ import annotations

import logging

from ..facts import Fact
from .base import ExtractionError, Extractor, latest

log = logging.getLogger(__name__)


class Both:
    """Where both give a (subject, relation) the rules' object is kept (their precision is measured and higher);
    the model adds what the rules miss. While the model cannot answer, the rules' facts alone."""

    def __init__(self, rules: Extractor, model: Extractor):
        self.rules, self.model = rules, model

    def extract(self, text: str, user_id: str = "default") -> list[Fact]:
        ruled = self.rules.extract(text, user_id)
        try:
            modelled = self.model.extract(text, user_id)
        except ExtractionError as e:
            log.warning("the model extractor failed (%s): this message's facts come from the rules alone", e)
            return ruled
        return latest([*modelled, *ruled])
