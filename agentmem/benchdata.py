"""Deterministic evaluation data: facts about fictional people, unrelated probes, held-out text.

Shared by the tests and `agentmem eval` so that both measure the same thing.
"""

from __future__ import annotations

import random

from .facts import Fact

FIRST = [
    "Aria", "Bram", "Lena", "Tobias", "Yuki", "Mira", "Casper", "Ines", "Dario", "Sofia", "Keanu", "Olga",
    "Rafael", "Nadia", "Emeka", "Freya", "Joaquin", "Signe", "Anders", "Priya", "Lucas", "Zofia", "Mateo",
    "Hana", "Idris", "Greta", "Oskar", "Leila", "Ruben", "Thea", "Marek", "Ayla", "Felix", "Noor", "Elio",
]
LAST = [
    "Castellanos", "Okonkwo", "Marchetti", "Nwankwo", "Halvorsen", "Delacroix", "Ilunga", "Van Rooyen",
    "Fitzgerald", "Brennan", "Takahashi", "Lindqvist", "Ferreira", "Abernathy", "Quispe", "Kowalczyk",
    "Oyelaran", "Haddad", "Sorensen", "Varga", "Mbeki", "Thorsen", "Albescu", "Morrow", "Ekwueme",
    "Nakashima", "Petrov", "Rasmussen", "Belmonte", "Achterberg",
]
OBJECTS = {
    "lives in": ["Portland", "Oslo", "Nairobi", "Lisbon", "Montreal", "Kyoto", "Dublin", "Santiago", "Vienna", "Cairo",
                 "Helsinki", "Seattle", "Marseille", "Osaka", "Edinburgh"],
    "works at": ["Siemens", "Nintendo", "Boeing", "Spotify", "Toyota", "Heineken", "Pfizer", "Samsung", "Netflix", "Ikea"],
    "was born in": ["Lisbon", "Munich", "Buenos Aires", "Krakow", "Glasgow", "Valencia", "Bangkok", "Toronto", "Athens"],
    "speaks": ["Finnish", "Portuguese", "Korean", "Swahili", "Dutch", "Hungarian", "Turkish", "Greek", "Polish"],
    "plays the": ["cello", "trumpet", "banjo", "harp", "violin", "saxophone", "flute", "drums"],
    "owns a dog named": ["Biscuit", "Pepper", "Waffles", "Nugget", "Ziggy", "Maple", "Bruno", "Pickles"],
    "is allergic to": ["peanuts", "penicillin", "shellfish", "pollen", "latex", "strawberries"],
    "drives a": ["Volvo", "Tesla", "Subaru", "Fiat", "Jeep", "Mazda", "Porsche"],
}

def same_subject_facts(people: int, per_person: int, seed: int = 0) -> list[Fact]:
    """`per_person` facts about each of `people` fictional people (one relation each), person by person."""
    rng = random.Random(seed)
    names = _people(rng)
    relations = list(OBJECTS)
    if per_person > len(relations):
        raise ValueError(f"at most {len(relations)} facts per person are available")
    return [Fact(subject=name, relation=rel, object=rng.choice(OBJECTS[rel]))
            for name in names[:people] for rel in rng.sample(relations, per_person)]


# Chat questions and raw prompts about other people and the world: an edit must not change their answers.
UNRELATED_CHAT = [
    "What is the capital of France?", "Who wrote Hamlet?", "Where does Tom Hanks live?",
    "What is the largest planet in the solar system?", "Who painted the Mona Lisa?",
    "What language is spoken in Brazil?", "Where was Albert Einstein born?", "What is the boiling point of water?",
    "Where does Maria Lopez work?", "What instrument does Yo-Yo Ma play?",
]
UNRELATED_RAW = [
    "The capital of France is", "The Eiffel Tower is located in", "Barack Obama was born in",
    "The largest ocean on Earth is the", "Water is made of hydrogen and", "Michael Jordan played",
    "Anna Kowalski lives in", "John Smith works at", "The official language of Japan is", "Paris is the capital of",
]

# Held-out text for perplexity: never used for covariance (which is model-sampled) or editing.
HELDOUT = [
    "The river wound through the valley, past orchards and old stone farmhouses, before it reached the sea.",
    "Photosynthesis converts light energy into chemical energy, storing it in the bonds of sugar molecules.",
    "She opened the letter slowly, unsure whether the news inside would change everything or nothing at all.",
    "Most modern computers store information as binary digits, which are either zero or one.",
    "The museum's new exhibition brings together paintings from three centuries of European art.",
    "To make a simple bread, mix flour, water, salt and yeast, then let the dough rise for an hour.",
    "The committee agreed to postpone the vote until every member had read the full report.",
    "Mountains form over millions of years as tectonic plates collide and push the crust upward.",
    "He trained every morning before sunrise, running along the empty beach while the town slept.",
    "Vaccines teach the immune system to recognise a pathogen without causing the disease itself.",
    "The library stays open late during exam season so that students have a quiet place to study.",
    "Trade routes across the desert carried salt, gold and ideas between distant kingdoms.",
    "A good night's sleep improves memory, mood and the ability to concentrate during the day.",
    "The orchestra tuned their instruments as the audience settled into their seats.",
    "Engineers tested the bridge by driving heavily loaded trucks across it before it opened.",
    "In autumn the leaves turn red and gold, and the air smells of wood smoke and rain.",
]


def _people(rng: random.Random) -> list[str]:
    """Every fictional full name, in an order drawn from `rng`."""
    names = [f"{f} {l}" for f in FIRST for l in LAST]
    rng.shuffle(names)
    return names


def fictional_facts(n: int, seed: int = 0, user_id: str = "default") -> list[Fact]:
    """`n` facts about distinct fictional people, each with a relation that has paraphrases."""
    rng = random.Random(seed)
    names = _people(rng)
    if n > len(names):
        raise ValueError(f"at most {len(names)} fictional people are available")
    relations = list(OBJECTS)
    facts = []
    for i in range(n):
        rel = relations[(i + seed) % len(relations)]
        facts.append(Fact(subject=names[i], relation=rel, object=rng.choice(OBJECTS[rel]), user_id=user_id))
    return facts
