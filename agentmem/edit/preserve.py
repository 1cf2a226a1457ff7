"""Keys that every edit must leave alone: other people and things, in the sites edits use.

Edits are keyed at a subject's last token, and the keys of all person names
share a direction that ordinary text rarely exercises. Without these rows an
edit about one person leaks into answers about every other person. The names
here are disjoint from the evaluation's probes and fictional subjects.
"""

from __future__ import annotations

import torch

from .forward import run_capture
from .sites import Site, chat_text, subject_last_token

NAMES = [
    "James Carter", "Emily Johnson", "Michael Brown", "Sarah Davis", "David Wilson", "Laura Martinez",
    "Robert Taylor", "Jessica Anderson", "William Thomas", "Olivia Jackson", "Daniel White", "Sophie Harris",
    "Thomas Martin", "Chloe Thompson", "Joseph Garcia", "Grace Robinson", "Charles Clark", "Hannah Lewis",
    "Mark Walker", "Ella Hall", "Paul Allen", "Isabel Young", "George King", "Lucy Wright", "Kevin Scott",
    "Amy Green", "Steven Baker", "Julia Adams", "Brian Nelson", "Megan Hill", "Pierre Dubois", "Hans Becker",
    "Giulia Romano", "Carlos Silva", "Mei Chen", "Raj Patel", "Fatima Khan", "Ivan Sokolov", "Kenji Sato",
    "Amara Diallo", "Lars Nilsson", "Elena Popescu", "Omar Farouk", "Ana Souza", "Jin Park", "Sven Berg",
    "Chiara Ricci", "Diego Ramos", "Aisha Bello", "Tomasz Nowak", "Isaac Newton", "Marie Curie",
    "Taylor Swift", "Elon Musk", "Serena Williams", "Lionel Messi", "Queen Elizabeth", "Charles Darwin",
]
# Other things users ask about: the key at the end of "What is the capital of Spain" is
# close to the one at the end of "Where does Ana Souza", so it must be held too.
ENTITIES = [
    "Spain", "Germany", "Japan", "Canada", "Mexico", "Egypt", "India", "Australia", "Norway", "Argentina",
    "London", "Berlin", "Tokyo", "New York", "Rome", "the Moon", "the Amazon river", "Mount Everest",
    "the Great Wall", "photosynthesis", "Microsoft", "Toyota Motor", "the guitar", "chess", "Romeo and Juliet",
    "the Odyssey", "the Beatles", "World War II", "gravity", "the piano",
]
RAW = ["{s} is", "{s} lives in", "{s} works at"]
QUESTIONS = ["Where does {s} live?", "Who is {s}?", "What does {s} do?"]
ENTITY_QUESTIONS = ["What is the capital of {s}?", "Tell me about {s}.", "Where is {s}?", "Who created {s}?"]


def preservation_sites(tokenizer) -> tuple[list[Site], int]:
    """One site per (name, template); every site is its own key column."""
    texts = [(t.format(s=s), s) for s in NAMES for t in RAW]
    texts += [(chat_text(tokenizer, q.format(s=s)), s) for s in NAMES for q in QUESTIONS]
    texts += [(chat_text(tokenizer, q.format(s=e)), e) for e in ENTITIES for q in ENTITY_QUESTIONS]
    sites = []
    for text, s in texts:
        ids, pos = subject_last_token(tokenizer, text, s)
        sites.append(Site(ids, pos, None, len(sites), "keep"))
    return sites, len(sites)


def preservation_keys(model, tokenizer, layers: list[int]) -> dict[int, torch.Tensor]:
    """{layer: keys (d_ff, n)} of the names above, on the model as it is now."""
    sites, _ = preservation_sites(tokenizer)
    with torch.device(model.device):
        keys, _ = run_capture(model, tokenizer, sites, layers, [])
    return {l: k.T.contiguous().cpu() for l, k in keys.items()}

