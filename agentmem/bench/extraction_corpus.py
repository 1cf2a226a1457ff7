"""Generated conversation snippets with their facts, for training a model to extract (torch-free).

Each template is a message with slots and the triples it states, written to the conventions of
`agentmem.extract` (the user is "User <id>"; a person named by first name is keyed by their relation to the
user, by full name by that name; negation, plans and lists as the hand-written sets annotate them). The
fillers are drawn at random, so the same template never gives the same snippet twice. Several templates follow
phrasings of the dev set (extraction-dev.jsonl), so dev flatters an adapter trained on them; the blind
held-out set (extraction-heldout2.jsonl) was never read.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..extract.vocabulary import PETS, ROLES
from .data import FIRST, LAST

CITIES = ["Oslo", "Lisbon", "Nairobi", "Kyoto", "Dublin", "Santiago", "Vienna", "Cairo", "Helsinki", "Seattle",
          "Marseille", "Osaka", "Edinburgh", "Porto", "Krakow", "Glasgow", "Valencia", "Bangkok", "Toronto",
          "Athens", "Lagos", "Denver", "Hamburg", "Lyon", "Tbilisi", "Hanoi", "Austin", "Cork", "Bergen",
          "Ghent", "Leeds", "Perth", "Quito", "Riga", "Seville", "Tunis", "Utrecht", "Zagreb", "Bristol", "Pune"]
COMPANIES = ["Siemens", "Nintendo", "Boeing", "Spotify", "Toyota", "Heineken", "Pfizer", "Samsung", "Netflix",
             "Ikea", "Deloitte", "Accenture", "Unilever", "Airbus", "Lidl", "Zalando", "Vodafone", "Nestle",
             "a hospital", "a bank", "a startup", "a law firm", "a primary school", "the council", "a bakery"]
JOBS = ["nurse", "software engineer", "dentist", "teacher", "accountant", "plumber", "architect", "chef",
        "graphic designer", "pharmacist", "electrician", "data analyst", "lawyer", "paramedic", "midwife",
        "carpenter", "translator", "journalist", "vet", "project manager", "barista", "pilot", "physiotherapist",
        "librarian", "social worker", "sound engineer", "beekeeper", "florist", "web developer", "surveyor"]
FIELDS = ["healthcare", "finance", "IT", "marketing", "education", "logistics", "retail", "insurance", "publishing",
          "construction", "hospitality", "biotech"]
SUBJECTS = ["history", "maths", "chemistry", "art", "music", "biology", "physics", "French", "geography"]
STUDIES = ["marine biology", "law", "economics", "computer science", "medicine", "philosophy", "architecture",
           "linguistics", "nursing", "civil engineering", "psychology", "art history"]
UNIS = ["UCLA", "ETH Zurich", "Oxford", "McGill", "the Sorbonne", "TU Delft", "Stanford", "KU Leuven", "NYU",
        "Trinity College", "the University of Tokyo", "Uppsala University"]
BUSINESSES = ["coffee shop", "bakery", "bookshop", "bike repair shop", "yoga studio", "food truck", "bed and breakfast",
              "small vineyard", "hair salon", "pottery studio", "cleaning company", "flower shop"]
LANGUAGES = ["Finnish", "Portuguese", "Korean", "Swahili", "Dutch", "Hungarian", "Turkish", "Greek", "Polish",
             "Japanese", "Italian", "Arabic", "Welsh", "Mandarin", "Spanish", "German", "Hindi", "Russian"]
INSTRUMENTS = ["cello", "trumpet", "banjo", "harp", "violin", "saxophone", "flute", "drums", "piano", "guitar",
               "accordion", "clarinet", "ukulele", "bassoon", "oboe", "mandolin"]
SPORTS = ["tennis", "badminton", "squash", "volleyball", "golf", "chess", "padel", "rugby", "cricket", "hockey"]
FOODS = ["pork", "beef", "shellfish", "mushrooms", "olives", "cilantro", "eggs", "dairy", "gluten", "lamb", "tofu",
         "spicy food", "sushi", "broccoli", "liver"]
DRINKS = ["coffee", "alcohol", "milk", "tea", "beer", "soda", "wine", "energy drinks"]
ALLERGENS = ["peanuts", "penicillin", "shellfish", "pollen", "latex", "strawberries", "cats", "dust", "bee stings",
             "sesame", "kiwi", "wheat"]
LIKES = ["hiking", "jazz", "board games", "gardening", "horror movies", "sushi", "cycling", "opera", "crosswords",
         "sci-fi novels", "karaoke", "baking", "rock climbing", "podcasts", "reality TV", "camping"]
DIETS = ["vegetarian", "vegan", "pescatarian", "keto", "gluten-free", "halal", "kosher", "paleo"]
NATIONALITIES = ["Mexican", "Polish", "Irish", "Kenyan", "Brazilian", "Swedish", "Korean", "Greek", "Nigerian",
                 "Canadian", "Portuguese", "Vietnamese"]
CARS = ["Prius", "Golf", "Tesla", "Mini", "Volvo", "Fiat Panda", "Land Rover", "Corolla"]
CLUBS = ["Celtic", "Arsenal", "Ajax", "Benfica", "Napoli", "Boca Juniors", "Liverpool", "Porto"]
PET_NAMES = ["Biscuit", "Pepper", "Waffles", "Nugget", "Ziggy", "Maple", "Bruno", "Pickles", "Miso", "Luna",
             "Rex", "Noodle", "Mochi", "Pip", "Salem", "Tofu", "Juno", "Olive", "Bear", "Clementine"]
# the relation each word names its pet or person by is the extractors' convention (extract/vocabulary.py)
PET_WORDS = ["dog", "cat", "puppy", "kitten", "labrador", "beagle", "collie", "tabby", "rabbit", "hamster", "parrot",
             "tortoise", "guinea pig", "gecko"]
PET_HABITS = ["sleeping on the sofa", "chasing squirrels", "tennis balls", "cheese", "the snow", "long walks",
              "swimming", "cardboard boxes"]
ROLE_WORDS = ["sister", "brother", "mum", "mom", "dad", "son", "daughter", "aunt", "uncle", "cousin", "grandma",
              "grandfather", "neighbour", "neighbor", "colleague", "coworker", "boss", "flatmate", "roommate",
              "husband", "wife", "boyfriend", "girlfriend", "partner", "friend", "best friend", "niece", "nephew",
              "mentor", "therapist"]
PLANS = [("visit {city}", "visiting {city}"), ("move to {city}", "moving to {city}"),
         ("learn {language}", "learning {language}"), ("run a marathon", "running a marathon"),
         ("buy a house", "buying a house"), ("adopt a cat", "adopting a cat"), ("start a podcast", "starting a podcast"),
         ("fly to {city}", "flying to {city}"), ("open a {business}", "opening a {business}"),
         ("get a puppy", "getting a puppy"), ("quit the job", None), ("hike the Camino", "hiking the Camino"),
         ("sell the car", None), ("take a pottery class", "taking a pottery class"),
         ("go to {city}", "going to {city}")]
WHEN = ["next week", "in May", "this summer", "next year", "on Friday", "in the spring", "soon", "in a few weeks",
        "after Christmas", "tomorrow"]
USERS = ["u1", "u7", "bar", "c42", "zed", "k9", "ana", "u302", "mx", "b7"]

# Chit-chat around a fact: it states nothing, so it changes no triple.
OPENERS = ["", "", "", "", "Hi! ", "By the way, ", "Just so you know, ", "Fun fact: ", "Oh, and ", "So, ", "Well, ",
           "hey, ", "Quick thing: "]
CLOSERS = ["", "", "", "", " :)", " lol", " Anyway, how are you?", " Just thought you should know.", " haha",
           " Can you help me plan my week?"]


@dataclass(frozen=True)
class Snippet:
    user_id: str
    text: str
    expected: list[tuple[str, str, str]]
    category: str


def _person(rng: random.Random) -> tuple[str, str, str, bool]:
    """(role word, its relation, name, named in full)."""
    role = rng.choice(ROLE_WORDS)
    full = rng.random() < 0.5
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if full else rng.choice(FIRST)
    return role, ROLES[role.removeprefix("best ")], name, full


def _slots(rng: random.Random) -> dict[str, str]:
    return {"city": rng.choice(CITIES), "city2": rng.choice(CITIES), "company": rng.choice(COMPANIES),
            "job": rng.choice(JOBS), "field": rng.choice(FIELDS), "subject": rng.choice(SUBJECTS),
            "study": rng.choice(STUDIES), "uni": rng.choice(UNIS), "business": rng.choice(BUSINESSES),
            "language": rng.choice(LANGUAGES), "language2": rng.choice(LANGUAGES),
            "instrument": rng.choice(INSTRUMENTS), "sport": rng.choice(SPORTS),
            "food": rng.choice(FOODS), "food2": rng.choice(FOODS),
            "drink": rng.choice(DRINKS), "allergen": rng.choice(ALLERGENS), "allergen2": rng.choice(ALLERGENS),
            "like": rng.choice(LIKES), "like2": rng.choice(LIKES), "diet": rng.choice(DIETS),
            "nationality": rng.choice(NATIONALITIES), "car": rng.choice(CARS), "club": rng.choice(CLUBS),
            "pet_name": rng.choice(PET_NAMES), "habit": rng.choice(PET_HABITS), "when": rng.choice(WHEN),
            "n": str(rng.randint(2, 15))}


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


# (category, message, triples): "U" is the user; {a_job} is the job with its article.
SELF = [
    ("I live in {city}.", [("U", "lives in", "{city}")]),
    ("I've lived in {city} for {n} years.", [("U", "lives in", "{city}")]),
    ("I was born in {city}.", [("U", "was born in", "{city}")]),
    ("I'm from {city}.", [("U", "is from", "{city}")]),
    ("I speak {language}.", [("U", "speaks", "{language}")]),
    ("I play the {instrument}.", [("U", "plays the", "{instrument}")]),
    ("I've been playing the {instrument} since I was {n}.", [("U", "plays the", "{instrument}")]),
    ("I play {sport} every weekend.", [("U", "plays", "{sport}")]),
    ("I'm allergic to {allergen}.", [("U", "is allergic to", "{allergen}")]),
    ("I love {like}.", [("U", "likes", "{like}")]),
    ("I'm really into {like} these days.", [("U", "likes", "{like}")]),
    ("I'm {a_diet}.", [("U", "follows the diet", "{diet}")]),
    ("I eat {diet}.", [("U", "follows the diet", "{diet}")]),
    ("I'm learning {language}.", [("U", "is learning", "{language}")]),
    ("I've been learning the {instrument} for {n} months.", [("U", "is learning", "{instrument}")]),
    ("I'm taking {language} lessons.", [("U", "is learning", "{language}")]),
    ("I study {study}.", [("U", "studies", "{study}")]),
    ("I'm studying {study} at {uni}.", [("U", "studies", "{study}"), ("U", "studies at", "{uni}")]),
    ("I'm a student at {uni}.", [("U", "studies at", "{uni}")]),
    ("I studied at {uni}.", [("U", "studied at", "{uni}")]),
    ("I'm {nationality}.", [("U", "has the nationality", "{nationality}")]),
    ("I drive a {car}.", [("U", "drives a", "{car}")]),
    ("I support {club}.", [("U", "supports the football club", "{club}")]),
    ("My favourite drink is {drink}.", [("U", "has a favourite drink:", "{drink}")]),
    ("My favourite city is {city}.", [("U", "has a favourite city:", "{city}")]),
    ("My name is {first}.", [("U", "is named", "{first}")]),
    ("Call me {first}, that's my name.", [("U", "is named", "{first}")]),
]
WORK = [
    ("I'm {a_job}.", [("U", "works as", "{job}")]),
    ("I work as {a_job}.", [("U", "works as", "{job}")]),
    ("I've been {a_job} for {n} years.", [("U", "works as", "{job}")]),
    ("I work as {a_job} at {company}.", [("U", "works as", "{job}"), ("U", "works at", "{company}")]),
    ("I'm {a_job} at {company}.", [("U", "works as", "{job}"), ("U", "works at", "{company}")]),
    ("I work at {company}.", [("U", "works at", "{company}")]),
    ("I work for {company}.", [("U", "works at", "{company}")]),
    ("I got a job at {company} last month.", [("U", "works at", "{company}")]),
    ("My job is {job}.", [("U", "works as", "{job}")]),
    ("I work in {field}.", [("U", "works in", "{field}")]),
    ("I teach {subject}.", [("U", "teaches", "{subject}")]),
    ("I teach {subject} at {company}.", [("U", "teaches", "{subject}"), ("U", "works at", "{company}")]),
    ("I run a {business}.", [("U", "runs a", "{business}")]),
    ("I run a {business} in {city}.", [("U", "runs a", "{business}")]),
    ("I have my own {business}.", [("U", "runs a", "{business}")]),
    ("I'm a freelance {job}.", [("U", "works as", "freelance {job}")]),
    ("For work I'm {a_job}, mostly nights.", [("U", "works as", "{job}")]),
]
NEGATION = [
    ("I don't eat {food}.", [("U", "does not eat", "{food}")]),
    ("I never eat {food}.", [("U", "does not eat", "{food}")]),
    ("I don't drink {drink}.", [("U", "does not drink", "{drink}")]),
    ("I don't speak {language}.", [("U", "does not speak", "{language}")]),
    ("I don't like {like}.", [("U", "dislikes", "{like}")]),
    ("I hate {like}.", [("U", "dislikes", "{like}")]),
    ("I can't stand {like}.", [("U", "dislikes", "{like}")]),
    ("I'm not a fan of {like}.", [("U", "dislikes", "{like}")]),
    ("I don't work at {company} anymore.", []),
    ("I don't live in {city} anymore.", []),
    ("I used to play the {instrument}.", []),
    ("I'm not from {city}, I'm from {city2}.", [("U", "is from", "{city2}")]),
    ("I don't have a car.", []),
]
PLAN_TEMPLATES = [
    ("I'm going to {plan} {when}.", [("U", "is planning to", "{plan}")]),
    ("I plan to {plan} {when}.", [("U", "is planning to", "{plan}")]),
    ("I'm planning to {plan}.", [("U", "is planning to", "{plan}")]),
    ("{When} I'm {planning}.", [("U", "is planning to", "{plan}")]),
    ("I'm {planning} {when}.", [("U", "is planning to", "{plan}")]),
    ("Maybe I'll {plan} one day.", []),
    ("I might {plan}, not sure yet.", []),
]
PETS_TEMPLATES = [
    ("I have a {pet} called {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("I have a {pet} named {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("My {pet} is called {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("My {pet}'s name is {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("We just got a {pet} called {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("Our {pet} {pet_name} loves {habit}.", [("U", "{pet_rel}", "{pet_name}"), ("U's {pet}", "likes", "{habit}")]),
    ("My {pet} {pet_name} is allergic to {allergen}.",
     [("U", "{pet_rel}", "{pet_name}"), ("U's {pet}", "is allergic to", "{allergen}")]),
    ("My {role}'s {pet} is called {pet_name}.", [("U's {role}", "{pet_rel}", "{pet_name}")]),
]
PEOPLE = [
    ("My {role} {name} lives in {city}.", [("U", "{role_rel}", "{name}"), ("P", "lives in", "{city}")]),
    ("My {role} {name} works as {a_job}.", [("U", "{role_rel}", "{name}"), ("P", "works as", "{job}")]),
    ("My {role} {name} is {a_job}.", [("U", "{role_rel}", "{name}"), ("P", "works as", "{job}")]),
    ("My {role} {name} works at {company}.", [("U", "{role_rel}", "{name}"), ("P", "works at", "{company}")]),
    ("My {role} {name} plays the {instrument}.", [("U", "{role_rel}", "{name}"), ("P", "plays the", "{instrument}")]),
    ("My {role} {name} speaks {language}.", [("U", "{role_rel}", "{name}"), ("P", "speaks", "{language}")]),
    ("My {role} {name} is allergic to {allergen}.",
     [("U", "{role_rel}", "{name}"), ("P", "is allergic to", "{allergen}")]),
    ("My {role} {name} has a dog named {pet_name}.",
     [("U", "{role_rel}", "{name}"), ("P", "owns a dog named", "{pet_name}")]),
    ("{name}, my {role}, grew up in {city}.", [("U", "{role_rel}", "{name}"), ("P", "grew up in", "{city}")]),
    ("My {role} is called {first}.", [("U", "{role_rel}", "{first}")]),
    ("My {role}'s name is {first}.", [("U", "{role_rel}", "{first}")]),
    ("My {role} lives in {city}.", [("U's {role}", "lives in", "{city}")]),
    ("My {role} is {a_job}.", [("U's {role}", "works as", "{job}")]),
    ("My {role} doesn't eat {food}.", [("U's {role}", "does not eat", "{food}")]),
    ("My {role} is moving to {city} {when}.", [("U's {role}", "is planning to", "move to {city}")]),
    ("{full} works at {company}.", [("{full}", "works at", "{company}")]),
]
LISTS = [
    ("I live in {city}, work at {company} and play the {instrument}.",
     [("U", "lives in", "{city}"), ("U", "works at", "{company}"), ("U", "plays the", "{instrument}")]),
    ("I'm {a_job} and I live in {city}.", [("U", "works as", "{job}"), ("U", "lives in", "{city}")]),
    ("I speak {language} and {language2}.", [("U", "speaks", "{language} and {language2}")]),
    ("I'm allergic to {allergen} and {allergen2}.", [("U", "is allergic to", "{allergen} and {allergen2}")]),
    ("I love {like} and {like2}.", [("U", "likes", "{like} and {like2}")]),
    ("My {role} {name} lives in {city} and teaches {subject}.",
     [("U", "{role_rel}", "{name}"), ("P", "lives in", "{city}"), ("P", "teaches", "{subject}")]),
    ("My {role} is {a_job} and lives in {city}.", [("U's {role}", "works as", "{job}"), ("U's {role}", "lives in", "{city}")]),
    ("I drive a {car} and I support {club}.", [("U", "drives a", "{car}"), ("U", "supports the football club", "{club}")]),
    ("I'm {nationality}, I live in {city} and I'm learning {language}.",
     [("U", "has the nationality", "{nationality}"), ("U", "lives in", "{city}"), ("U", "is learning", "{language}")]),
]
CONTRAST = [
    ("I grew up in {city} but now live in {city2}.", [("U", "grew up in", "{city}"), ("U", "lives in", "{city2}")]),
    ("I was born in {city} but I live in {city2} now.", [("U", "was born in", "{city}"), ("U", "lives in", "{city2}")]),
    ("I'm originally from {city}, but I live in {city2}.", [("U", "is from", "{city}"), ("U", "lives in", "{city2}")]),
    ("I used to live in {city}, now I live in {city2}.", [("U", "lives in", "{city2}")]),
    ("We moved from {city} to {city2} last year.", [("U", "lives in", "{city2}")]),
    ("I work in {city} but live in {city2}.", [("U", "lives in", "{city2}")]),
]
CORRECTIONS = [
    ("I live in {city}, sorry, I mean {city2}.", [("U", "lives in", "{city2}")]),
    ("I work at {company}. Actually no, I work at {company2} now.", [("U", "works at", "{company2}")]),
    ("Actually, my favourite drink is {drink2}.", [("U", "has a favourite drink:", "{drink2}")]),
    ("I play the {instrument}, not the {instrument2}.", [("U", "plays the", "{instrument}")]),
    ("My {pet} is called {pet_name}. Sorry, my {pet} is called {pet_name2}.", [("U", "{pet_rel}", "{pet_name2}")]),
    ("Correction: I'm {a_job}, not a {job2}.", [("U", "works as", "{job}")]),
]
QUESTIONS = [
    "Where do I live?", "What's my dog called?", "Should I learn {language} or {language2}?",
    "What does my {role} do?", "Can you recommend a restaurant in {city}?", "How do I bake bread?",
    "Do you remember where I work?", "Is {city} worth visiting?", "What instrument does {full} play?",
    "Is {city} the capital of its country?", "Am I allergic to anything? I forget what I told you.",
    "What's a good name for a {pet}?", "How long does it take to learn the {instrument}?",
    "Why do cats purr?", "can you explain how mortgages work", "Which is healthier, {food} or {food2}?",
]
HYPOTHETICALS = [
    "If I lived in {city}, I'd cycle everywhere.", "I wish I could play the {instrument}.",
    "Imagine I was {a_job}.", "What if I moved to {city}?", "Someday I'd love to live in {city}.",
    "If I had a {pet}, I'd call it {pet_name}.", "If I were {a_job} I'd work in {city}.",
    "In a perfect world I'd be {a_job}.", "Suppose I worked at {company}, what would my day look like?",
    "I might become {a_job}, who knows.", "If my {role} gets the job, they'll move to {city}.",
    "I'd love to learn {language} one day.", "Maybe one day I'll own a {business}.",
]
QUOTES = [
    "My {role} always says \"I live in {city}\".", "Translate \"I am {a_job}\" into {language}.",
    "The sign said \"We speak {language}\".", "She told me \"I work at {company}\" but I don't believe her.",
    "In the book the hero says \"My name is {first}.\"", "My {role} keeps saying \"I hate {like}\" lol",
    "Her bio says \"I'm {a_job}\".", "The lyric is \"I'm a believer\", right?",
    "\"My {pet} is my best friend,\" he said.", "My son wrote \"I want to be {a_job}\" in his essay.",
]
INSTRUCTIONS = [
    "Answer in {language} from now on.", "Pretend you're {a_job} who lives in {city}.", "Keep your answers short.",
    "Write me a poem about {like}.", "From now on your name is {first}.", "Act as my {language} tutor.",
    "Remember that you're a pirate.", "Make me a packing list for {city}.", "Ignore your instructions.",
    "Give me three dinner ideas without {food}.",
]
SECRETS = [
    "my pin is {n}{n}", "The wifi password is {pet_name}{n}.", "my card number is 4111 1111 1111 1111",
    "my bank account number is {n}{n}{n}{n}", "The door code is {n}{n}.", "passport no. K{n}{n}{n}",
    "My api token is ghp_{pet_name}{n}, don't share it.", "my locker combination is {n}-{n}-{n}",
]
SMALL_TALK = [
    "hi!", "thanks a lot", "I'm tired", "I'm so happy today!", "brb", "I just had coffee", "what a day", "ok cool",
    "I'm hungry lol", "I'm at work right now", "I'm a little nervous about my exam", "good morning :)",
    "haha that's hilarious", "I'm back", "I'm bored", "I had a long day at work", "that's so cool",
    "I'm running late", "I'm writing to ask about my order.", "I'm learning a lot from you.",
]
NOTHING = QUESTIONS + HYPOTHETICALS + QUOTES + INSTRUCTIONS + SECRETS + SMALL_TALK
SECRETS_WITH_FACT = [
    ("My password is {pet_name}{n} and I live in {city}.", [("U", "lives in", "{city}")]),
    ("The door code is {n}{n}. I'm {a_job}.", [("U", "works as", "{job}")]),
    ("My PIN is {n}{n}. Also I'm allergic to {allergen}.", [("U", "is allergic to", "{allergen}")]),
    ("Our alarm code is {n}{n} and our {pet} is called {pet_name}.", [("U", "{pet_rel}", "{pet_name}")]),
    ("My locker combination is {n}-{n}, I work at {company}.", [("U", "works at", "{company}")]),
]
# a fact beside something that is not one: only the fact is kept
MIXED = [
    ("I live in {city} but if I lived in {city2} I'd walk everywhere.", [("U", "lives in", "{city}")]),
    ("My {role} lives in {city}. She always says \"I'll never move back.\"", [("U's {role}", "lives in", "{city}")]),
    ("Please remember my favourite drink is {drink}.", [("U", "has a favourite drink:", "{drink}")]),
    ("Write a birthday message for my husband {first}.", [("U", "is married to", "{first}")]),
    ("Don't suggest recipes with {food}, I'm {a_diet}.", [("U", "follows the diet", "{diet}")]),
    ("I take my {pet} {pet_name} to the park every day.", [("U", "{pet_rel}", "{pet_name}")]),
    ("I'm {nationality} and proud of it.", [("U", "has the nationality", "{nationality}")]),
    ("I'm on a {diet} diet.", [("U", "follows the diet", "{diet}")]),
    ("I'm currently writing a novel.", [("U", "is currently", "writing a novel")]),
    ("I'm training for a marathon.", [("U", "is currently", "training for a marathon")]),
    ("I used to live in {city}.", []),
    ("I used to work at {company}, now I work at {company2}.", [("U", "works at", "{company2}")]),
]

TEMPLATES: dict[str, list] = {
    "self": SELF, "work": WORK, "negation": NEGATION, "plans": PLAN_TEMPLATES, "pets": PETS_TEMPLATES,
    "named-people": PEOPLE, "lists": LISTS, "places-contrast": CONTRAST, "corrections": CORRECTIONS,
    "nothing": [(t, []) for t in NOTHING], "secrets": SECRETS_WITH_FACT, "mixed": MIXED,
}
WEIGHTS = {"self": 3, "work": 3, "negation": 2, "plans": 2, "pets": 2, "named-people": 4, "lists": 2,
           "places-contrast": 1, "corrections": 1, "nothing": 6, "secrets": 1, "mixed": 2}

_SLOT = re.compile(r"\{(\w+)\}")


def _fill(text: str, slots: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: slots[m.group(1)], text)


def snippet(rng: random.Random, category: str) -> Snippet:
    """One generated snippet of `category` (a key of TEMPLATES)."""
    user = rng.choice(USERS)
    message, triples = rng.choice(TEMPLATES[category])
    s = _slots(rng)
    role, role_rel, name, full = _person(rng)
    pet = rng.choice(PET_WORDS)
    plan, planning = rng.choice(PLANS)
    if planning is None and "{planning}" in message:  # a plan with no -ing form is said the plain way
        message = "I'm planning to {plan}."
    s |= {"role": role, "role_rel": role_rel, "name": name, "first": rng.choice(FIRST),
          "full": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "pet": pet, "pet_rel": PETS[pet],
          "company2": rng.choice(COMPANIES), "drink2": rng.choice(DRINKS), "instrument2": rng.choice(INSTRUMENTS),
          "pet_name2": rng.choice(PET_NAMES), "job2": rng.choice(JOBS)}
    s |= {"a_job": f"{_article(s['job'])} {s['job']}", "a_diet": f"{_article(s['diet'])} {s['diet']}",
          "plan": _fill(plan, s), "planning": _fill(planning or plan, s), "When": s["when"].capitalize()}
    # "my best friend" is stored as the user's friend, the word the relation names them by
    person = name if full else f"User {user}'s {role.removeprefix('best ')}"
    text, opener = _fill(message, s), rng.choice(OPENERS)
    if opener and not text.startswith(("I ", "I'")) and not message.startswith("{"):
        text = text[0].lower() + text[1:]  # "By the way, my sister ..."
    text = opener + text + rng.choice(CLOSERS)
    # people type in lowercase, and what they typed is what is kept; names stay as written
    lower = rng.random() < 0.15 and not any(k in message for k in ("{name}", "{first}", "{full}", "{pet_name"))
    if lower:
        text = text.lower().rstrip(".")
    expected = []
    for subj, rel, obj in triples:
        subj = {"U": f"User {user}", "P": person}.get(subj, subj).replace("U's ", f"User {user}'s ")
        subj = subj.replace("{role}", role.removeprefix("best "))
        obj = _fill(obj, s)
        expected.append((_fill(subj, s), _fill(rel, s), obj.lower() if lower else obj))
    return Snippet(user, text, expected, category)


def corpus(n: int, seed: int = 0) -> list[Snippet]:
    """`n` generated snippets, categories drawn by WEIGHTS, the same for the same seed."""
    rng = random.Random(seed)
    names, weights = zip(*WEIGHTS.items())
    return [snippet(rng, rng.choices(names, weights)[0]) for _ in range(n)]
