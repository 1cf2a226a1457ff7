"""Deterministic benchmark data: facts about fictional people, for the tests and `agentmem eval` alike."""

from __future__ import annotations

import random

from ..facts import Fact

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


def _people(rng: random.Random) -> list[str]:
    """Every fictional full name, in an order drawn from `rng`."""
    names = [f"{f} {l}" for f in FIRST for l in LAST]
    rng.shuffle(names)
    return names


def fictional_facts(n: int, seed: int = 0, user_id: str | None = None) -> list[Fact]:
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
