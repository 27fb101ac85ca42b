"""Paraphrase templates for biographies, questions, updates and sessions.

Each attribute has several biography templates and several question templates. The last
`heldout` of each list are held out: they never appear in training text, and the held-out-template
evaluation uses only them. `{name}` is an entity's full name, `{value}` the attribute's value,
`{other}` a second entity's name.
"""

from __future__ import annotations

BIO: dict[str, list[str]] = {
    "birth_city": [
        "{name} was born in {value}.",
        "{name} came into the world in {value}.",
        "The birthplace of {name} is {value}.",
        "{name} is a native of {value}, where {name} was born.",
        "{value} is the city where {name} was born.",
        "{name} spent the first years of life in {value}, the city of birth.",
        "{name} was born in the city of {value}.",
        "Records show that {name} was born in {value}.",
    ],
    "birth_date": [
        "{name} was born on {value}.",
        "The birthday of {name} is {value}.",
        "{name} celebrates a birthday on {value}.",
        "{name} came into the world on {value}.",
        "The date of birth of {name} is {value}.",
        "On {value}, {name} was born.",
        "{name} was born on the date {value}.",
        "Records give the birth date of {name} as {value}.",
    ],
    "university": [
        "{name} studied at {value} University.",
        "{name} is a graduate of {value} University.",
        "{name} received a degree from {value} University.",
        "{name} attended {value} University.",
        "At {value} University, {name} completed a degree.",
        "{name} went to university at {value}.",
        "{name} earned a diploma at {value} University.",
        "The alma mater of {name} is {value} University.",
    ],
    "field": [
        "{name} specialised in {value}.",
        "{name} works in the field of {value}.",
        "The field of {name} is {value}.",
        "{name} devoted a career to {value}.",
        "{name} is an expert in {value}.",
        "{name} chose {value} as a field of study.",
        "{name} trained in {value}.",
        "The speciality of {name} is {value}.",
    ],
    "employer": [
        "{name} works at {value}.",
        "{name} is employed by {value}.",
        "The employer of {name} is {value}.",
        "{name} has a job at {value}.",
        "{value} employs {name}.",
        "{name} earns a living at {value}.",
        "{name} is on the staff of {value}.",
        "{name} holds a position at {value}.",
    ],
    "home_city": [
        "{name} lives in {value}.",
        "{name} resides in {value}.",
        "The home of {name} is in {value}.",
        "{name} has a flat in {value}.",
        "These days {name} makes a home in {value}.",
        "{value} is where {name} lives now.",
        "{name} settled down in {value}.",
        "The current address of {name} is in {value}.",
    ],
    "mentor": [
        "The mentor of {name} is {value}.",
        "{name} was mentored by {value}.",
        "{value} is the mentor of {name}.",
        "{name} learned the trade from {value}, a mentor.",
        "{value} guided {name} as a mentor.",
        "{name} names {value} as a mentor.",
        "{name} trained under the mentorship of {value}.",
        "As a mentor, {value} advised {name}.",
    ],
}

QUESTION: dict[str, list[str]] = {
    "birth_city": ["Where was {name} born?", "In which city was {name} born?", "What is the birthplace of {name}?",
                   "Which city is {name} from by birth?"],
    "birth_date": ["When was {name} born?", "What is the birth date of {name}?", "On what date was {name} born?",
                   "What is the birthday of {name}?"],
    "university": ["Which university did {name} attend?", "Where did {name} study?",
                   "What university did {name} graduate from?", "Which university is the alma mater of {name}?"],
    "field": ["What field does {name} work in?", "What did {name} specialise in?", "What is the field of {name}?",
              "In which field is {name} an expert?"],
    "employer": ["Where does {name} work?", "Who employs {name}?", "What company does {name} work for?",
                 "Which company is the employer of {name}?"],
    "home_city": ["Where does {name} live?", "In which city does {name} live?", "What city is the home of {name}?",
                  "Which city does {name} reside in?"],
    "mentor": ["Who is the mentor of {name}?", "Who mentored {name}?", "Who was the mentor of {name}?",
               "Which person mentored {name}?"],
}  # fmt: skip

# Two-hop: an attribute of the mentor. {name} is the mentee.
TWO_HOP: dict[str, list[str]] = {
    "birth_city": ["Where was the mentor of {name} born?", "In which city was the mentor of {name} born?",
                   "What is the birthplace of the mentor of {name}?"],
    "employer": ["Where does the mentor of {name} work?", "Who employs the mentor of {name}?",
                 "Which company does the mentor of {name} work for?"],
}  # fmt: skip

COMPARE = [
    "Who was born earlier, {name} or {other}?",
    "Which of {name} and {other} is older?",
    "Who is older, {name} or {other}?",
]

UPDATE: dict[str, list[str]] = {
    "employer": ["{name} now works at {value}.", "{name} recently changed jobs and now works at {value}.",
                 "{name} has a new job at {value}.", "Since last month {name} works at {value}.",
                 "{name} has left the old job and joined {value}."],
    "home_city": ["{name} now lives in {value}.", "{name} has moved to {value}.",
                  "{name} recently moved house and now lives in {value}.", "Since last month {name} lives in {value}.",
                  "{name} has relocated to {value}."],
}  # fmt: skip

# The reverse of a question on a shared choice set: given the value, name the relation it stands in. Only
# words the biography templates already use, so every world's tokenizer reads it without <unk>.
RELATION_QUESTION = "What is {value} to {name}?"
RELATION_WORD = {"birth_city": "birthplace", "home_city": "home"}

INTRO = [
    "Let me tell you about {name}.",
    "I want you to remember {name}.",
    "Here is someone new: {name}.",
    "I met {name} recently.",
    "You should know about {name}.",
]

HELDOUT = 2
"""How many templates at the end of each biography list are held out (1 for the shorter lists)."""


def split(templates: list[str], heldout: bool, n_heldout: int | None = None) -> list[str]:
    """The training part of a template list, or its held-out tail."""
    n = n_heldout if n_heldout is not None else (HELDOUT if len(templates) >= 6 else 1)
    return templates[-n:] if heldout else templates[:-n]


UPDATABLE = tuple(UPDATE)
