"""The words the rules know: relations of people and pets, jobs, instruments, sports, plans, and words that are not names."""

from __future__ import annotations

import re

from ..facts.schema import KIN

# Relation word -> the relation that names them (None: a group, described but not named).
ROLES: dict[str, str | None] = {
    "sister": "has a sister named", "brother": "has a brother named",
    "son": "has a son named", "daughter": "has a daughter named",
    "mother": "has a mother named", "mom": "has a mother named", "mum": "has a mother named",
    "father": "has a father named", "dad": "has a father named",
    "wife": "is married to", "husband": "is married to", "spouse": "is married to",
    "partner": "has a partner named", "girlfriend": "has a partner named", "boyfriend": "has a partner named",
    "fiance": "has a partner named", "fiancee": "has a partner named",
    "friend": "is friends with", "bestie": "is friends with",
    "colleague": "has a colleague named", "coworker": "has a colleague named", "co-worker": "has a colleague named",
    "boss": "has a boss named", "manager": "has a boss named", "roommate": "has a roommate named",
    "grandma": "has a grandmother named", "granny": "has a grandmother named", "nan": "has a grandmother named",
    "nana": "has a grandmother named", "grandpa": "has a grandfather named", "grandad": "has a grandfather named",
    "granddad": "has a grandfather named", "auntie": "has an aunt named", "neighbor": "has a neighbour named",
    "stepmom": "has a stepmother named", "stepmum": "has a stepmother named", "stepdad": "has a stepfather named",
    "bf": "has a partner named", "gf": "has a partner named", "hubby": "is married to",
} | {w: f"has {'an' if w[0] in 'aeiou' else 'a'} {w} named" for w in KIN} | {
    w: None for w in ("parents", "kids", "children", "grandparents", "family", "in-laws", "twins")
}

# Breeds people name instead of the animal ("my labrador Maple").
DOG_BREEDS = (
    "labrador", "golden retriever", "retriever", "beagle", "poodle", "terrier", "collie", "border collie",
    "spaniel", "cocker spaniel", "husky", "pug", "bulldog", "french bulldog", "frenchie", "corgi", "chihuahua",
    "greyhound", "whippet", "schnauzer", "dalmatian", "rottweiler", "german shepherd", "sheepdog", "labradoodle",
    "cockapoo", "cavapoo", "dachshund", "sausage dog", "doberman", "great dane", "mastiff", "staffie", "pitbull",
    "pit bull", "vizsla", "akita", "shiba", "samoyed", "malamute", "pomeranian", "yorkie",
    "jack russell", "shih tzu", "springer spaniel",
)
CAT_BREEDS = ("siamese", "persian", "maine coon", "ragdoll", "bengal", "sphynx", "tabby")

PETS: dict[str, str] = {"dog": "owns a dog named", "puppy": "owns a dog named", "pup": "owns a dog named",
                        "cat": "owns a cat named", "kitten": "owns a cat named", "kitty": "owns a cat named"} | {
    p: "owns a pet named" for p in (
        "parrot", "rabbit", "bunny", "hamster", "horse", "pony", "bird", "budgie", "fish", "goldfish", "turtle",
        "tortoise", "bearded dragon", "iguana", "axolotl", "cockatiel", "canary", "tarantula", "snake", "lizard",
        "gecko", "ferret", "hedgehog", "chinchilla", "guinea pig", "rat", "mouse",
    )
} | {b: "owns a dog named" for b in DOG_BREEDS} | {b: "owns a cat named" for b in CAT_BREEDS}

KIN_ADJ = r"(?:(?:older|younger|big|little|baby|twin|oldest|youngest|eldest|elder|best|new|old|good|close) )?"

ROLE_WORD = "|".join(sorted(map(re.escape, (*ROLES, *PETS)), key=len, reverse=True))

FAVOURITES = {
    "color": "color", "colour": "color", "food": "food", "dish": "food", "meal": "food", "cuisine": "food",
    "band": "band", "group": "band", "singer": "singer", "movie": "movie", "film": "movie", "book": "book",
    "novel": "book", "author": "author", "writer": "author", "sport": "sport", "drink": "drink",
    "beverage": "drink", "animal": "animal", "song": "song", "season": "season", "city": "city",
}

INSTRUMENTS = {
    "piano", "guitar", "violin", "cello", "drums", "bass", "flute", "saxophone", "sax", "trumpet", "ukulele",
    "harp", "clarinet", "banjo", "accordion", "trombone", "oboe", "keyboard", "keyboards", "harmonica", "viola",
    "mandolin", "organ", "bagpipes", "double bass", "electric guitar", "acoustic guitar", "synth", "tuba",
    "bassoon", "french horn", "xylophone", "recorder", "fiddle",
}

SPORTS = {
    "tennis", "football", "soccer", "basketball", "baseball", "volleyball", "golf", "badminton", "squash",
    "cricket", "rugby", "hockey", "ice hockey", "chess", "padel", "table tennis", "ping pong", "handball",
    "water polo", "poker", "bridge", "darts", "pool", "snooker", "ultimate frisbee", "softball", "lacrosse",
    "netball", "pickleball", "go",
}

JOBS = {
    "nurse", "doctor", "physician", "surgeon", "dentist", "pharmacist", "teacher", "professor", "lecturer",
    "tutor", "student", "engineer", "developer", "programmer", "designer", "architect", "lawyer", "attorney",
    "accountant", "auditor", "consultant", "analyst", "manager", "director", "scientist", "researcher", "chef",
    "cook", "baker", "barista", "waiter", "waitress", "bartender", "pilot", "driver", "mechanic", "electrician",
    "plumber", "carpenter", "farmer", "writer", "author", "journalist", "editor", "photographer", "artist",
    "musician", "actor", "actress", "painter", "translator", "interpreter", "therapist", "counselor",
    "counsellor", "worker", "librarian", "secretary", "receptionist", "clerk", "cashier", "firefighter",
    "paramedic", "officer", "soldier", "vet", "veterinarian", "midwife", "entrepreneur", "founder", "ceo",
    "cto", "freelancer", "contractor", "economist", "banker", "trader", "broker", "realtor", "agent",
    "technician", "administrator", "coordinator", "assistant", "intern", "apprentice", "janitor", "cleaner",
    "gardener", "tailor", "butcher", "fisherman", "sailor", "captain", "judge", "priest", "pastor", "rabbi",
    "imam", "nanny", "caregiver", "carer", "coach", "trainer", "instructor", "paralegal", "postman",
    "hairdresser", "electrician", "welder", "surveyor", "underwriter", "recruiter", "copywriter", "animator",
}

JOB_SUFFIX = re.compile(r"(?:ist|ician|eer|grapher)$")

NOT_NOW = {"retired", "former", "ex", "aspiring", "future", "wannabe", "would-be"}  # not a current job

NOT_JOBS = {"optimist", "pessimist", "perfectionist", "realist", "idealist", "minimalist", "purist", "specialist"}

# Capitalised words after "I'm" that are not names.
NOT_NAMES = {
    "i", "the", "a", "an", "this", "that", "these", "those", "it", "you", "your", "he", "she", "they", "we",
    "our", "my", "there", "here", "thanks", "thank", "hi", "hey", "hello", "sure", "yes", "no", "ok", "okay",
    "please", "also", "and", "but", "so", "well", "everyone", "everybody", "someone", "somebody", "nobody",
    "people", "nothing", "maybe", "today", "tomorrow", "yesterday", "now", "then", "next", "last", "just",
    "actually", "what", "where", "when", "who", "why", "how", "which", "if", "sorry", "fine", "good", "great",
    "back", "home", "done", "ready", "single", "vegan", "vegetarian", "christian", "catholic", "muslim",
    "jewish", "buddhist", "hindu", "american", "canadian", "mexican", "brazilian", "argentinian", "british",
    "english", "scottish", "irish", "welsh", "french", "german", "dutch", "belgian", "swiss", "austrian",
    "italian", "spanish", "portuguese", "greek", "turkish", "polish", "czech", "russian", "ukrainian",
    "swedish", "norwegian", "danish", "finnish", "icelandic", "chinese", "japanese", "korean", "vietnamese",
    "thai", "indian", "pakistani", "filipino", "indonesian", "australian", "nigerian", "kenyan", "egyptian",
    "moroccan", "african", "european", "asian", "latino", "latina", "not", "very", "really", "from", "in",
    "let's", "let", "grew", "born", "raised", "living", "working", "moved", "studying", "learning", "currently",
    "originally", "based", "lived",
}

PLAN_VERBS = {
    "visit", "travel", "move", "start", "run", "learn", "buy", "take", "fly", "study", "quit", "open", "build",
    "get", "adopt", "go", "climb", "hike", "begin", "launch", "retire", "apply", "join", "sell", "marry",
    "finish", "write", "compete", "relocate", "change", "switch", "renovate",
}

GERUNDS = {
    "going": "go", "flying": "fly", "travelling": "travel", "traveling": "travel", "moving": "move",
    "relocating": "relocate", "heading": "go", "driving": "drive", "visiting": "visit", "starting": "start",
    "taking": "take", "running": "run", "getting": "get", "adopting": "adopt", "buying": "buy",
    "quitting": "quit", "retiring": "retire", "joining": "join", "attending": "attend", "hosting": "host",
    "launching": "launch", "leaving": "leave", "learning": "learn", "studying": "study", "doing": "do",
    "opening": "open", "building": "build", "selling": "sell", "climbing": "climb", "hiking": "hike",
    "applying": "apply", "writing": "write", "renovating": "renovate", "finishing": "finish", "competing": "compete",
}

MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
           "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")

DATE = re.compile(rf"\b(?:{MONTHS})\b|\b\d{{4}}\b|^\d{{1,2}}(?:st|nd|rd|th)?\b", re.I)

# Words that end an object noun phrase: time words, connectives, pronouns, prepositions that start
# an adjunct ("a nurse at X", "Lisbon with my wife").
STOP = {
    "now", "currently", "today", "tonight", "tomorrow", "yesterday", "recently", "lately", "anymore", "ago",
    "soon", "later", "already", "originally", "still", "too", "also", "either", "though", "anyway", "actually",
    "right", "these", "last", "next", "this", "every", "since", "until", "till", "for", "with", "because",
    "as", "but", "so", "when", "where", "while", "who", "whom", "whose", "which", "that", "if", "although",
    "unless", "lol", "haha", "lmao", "btw", "especially", "particularly", "including", "except", "not",
    "like", "such", "please", "thanks", "i", "we", "you", "he", "she", "they", "it", "me", "him", "her",
    "them", "us", "your", "those", "in", "at", "on", "from", "by", "named", "called", "and/or", "etc",
    "instead", "after", "before", "during", "sorry",
}

PUNCT = ".,;:!?\"'()[]{}*_~`<>"

DIETS = ("vegetarian", "veggie", "vegan", "pescatarian", "pescetarian", "flexitarian", "plant-based", "keto",
         "paleo", "gluten-free", "gluten free", "dairy-free", "dairy free", "lactose-free", "low-carb", "low carb",
         "halal", "kosher", "raw vegan", "carnivore")

NATIONALITIES = (
    "american", "canadian", "mexican", "brazilian", "argentinian", "argentine", "chilean", "colombian", "peruvian",
    "venezuelan", "cuban", "british", "english", "scottish", "irish", "welsh", "french", "german", "dutch",
    "belgian", "swiss", "austrian", "italian", "spanish", "portuguese", "greek", "turkish", "polish", "czech",
    "slovak", "hungarian", "romanian", "bulgarian", "serbian", "croatian", "slovenian", "russian", "ukrainian",
    "swedish", "norwegian", "danish", "finnish", "icelandic", "estonian", "latvian", "lithuanian", "chinese",
    "japanese", "korean", "vietnamese", "thai", "indian", "pakistani", "bangladeshi", "sri lankan", "nepali",
    "filipino", "indonesian", "malaysian", "singaporean", "australian", "kiwi", "new zealander", "nigerian",
    "ghanaian", "kenyan", "ethiopian", "south african", "egyptian", "moroccan", "algerian", "tunisian",
    "lebanese", "israeli", "iranian", "iraqi", "syrian", "jordanian", "saudi", "emirati",
)

# The trade a business is ("a small plumbing business", "a bakery"): what "I run ..." must end in.
BUSINESSES = {
    "business", "company", "firm", "agency", "studio", "startup", "start-up", "shop", "store", "bakery", "cafe",
    "café", "restaurant", "bar", "pub", "hotel", "hostel", "b&b", "salon", "clinic", "practice", "gym", "school",
    "nursery", "daycare", "farm", "vineyard", "winery", "brewery", "distillery", "bookshop", "bookstore",
    "boutique", "consultancy", "gallery", "garage", "workshop", "truck", "stall", "charity", "franchise",
    "kitchen", "diner", "bistro", "deli", "pharmacy", "surgery", "dojo", "label", "magazine", "newsletter",
}

# Fields of work ("I work in marketing"); a place after "work in" is no fact.
FIELDS = {
    "marketing", "finance", "banking", "insurance", "healthcare", "health care", "medicine", "it", "tech",
    "technology", "software", "education", "sales", "hr", "human resources", "retail", "hospitality",
    "construction", "logistics", "publishing", "advertising", "law", "academia", "research", "pharma",
    "consulting", "real estate", "property", "fashion", "journalism", "media", "film", "tv", "television",
    "government", "politics", "the public sector", "public sector", "the nonprofit sector", "nonprofits",
    "engineering", "accounting", "recruitment", "recruiting", "design", "tourism", "aviation", "energy",
    "agriculture", "manufacturing", "telecoms", "cybersecurity", "security", "data science", "pr",
    "public relations", "social work", "social care", "customer service", "customer support", "operations",
    "procurement", "biotech", "gaming", "music", "theatre", "the arts", "events",
}

# What people say they are in the middle of ("I'm writing a novel"), with the preposition some take.
ONGOING = ("training for", "preparing for", "recovering from", "saving up for", "saving for", "working on",
           "writing", "renovating", "restoring", "building", "rebuilding", "recording", "knitting", "researching",
           "volunteering at", "volunteering for", "fixing up", "doing up", "organising", "organizing")

TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame"}
