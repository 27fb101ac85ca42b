"""Paraphrase templates for biographies, questions, updates and sessions.

Each attribute has several biography templates and several question templates. The last
`heldout` of each list are held out: they never appear in training text, and the held-out-template
evaluation uses only them. `{name}` is an entity's full name, `{value}` the attribute's value,
`{other}` a second entity's name.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

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

# More question forms for a world of `question_forms: 10` (WorldConfig): each list goes in before the original
# list's held-out last form, and its own last form is held out too, so such a world trains on 8 forms per
# attribute and holds out 2 (two-hop and comparison: 4 and 2). The original lists alone are the 4-form world
# every number before 2026-12-08 was measured on.
MORE_QUESTION: dict[str, list[str]] = {
    "birth_city": ["Where did {name} come into the world?", "What city was {name} born in?",
                   "Which city is the birthplace of {name}?", "Where is the birthplace of {name}?",
                   "In what city was {name} born?", "What is the city of birth of {name}?"],
    "birth_date": ["What is the date of birth of {name}?", "When is the birthday of {name}?",
                   "On which date was {name} born?", "When did {name} come into the world?",
                   "What date was {name} born on?", "When does {name} celebrate a birthday?"],
    "university": ["At which university did {name} study?", "Where did {name} earn a degree?",
                   "Which university did {name} go to?", "What is the university of {name}?",
                   "Where did {name} receive a degree?", "What university is {name} a graduate of?"],
    "field": ["Which field does {name} work in?", "What is the speciality of {name}?", "What did {name} train in?",
              "What field did {name} choose?", "What is {name} an expert in?", "What did {name} devote a career to?"],
    "employer": ["Who is the employer of {name}?", "Where is {name} employed?", "Which company employs {name}?",
                 "Where does {name} have a job?", "Who does {name} work for?",
                 "What company is {name} on the staff of?"],
    "home_city": ["Where does {name} reside?", "What city does {name} live in?", "Where is the home of {name}?",
                  "In which city is the home of {name}?", "Where does {name} live now?",
                  "Where has {name} settled down?"],
    "mentor": ["Who guided {name} as a mentor?", "Who was {name} mentored by?", "Who does {name} name as a mentor?",
               "Who advised {name} as a mentor?", "Who did {name} learn the trade from?",
               "Who is the person that mentored {name}?"],
}  # fmt: skip

MORE_TWO_HOP: dict[str, list[str]] = {
    "birth_city": ["What city was the mentor of {name} born in?", "Where did the mentor of {name} come into the world?",
                   "Which city is the birthplace of the mentor of {name}?"],
    "employer": ["Who is the employer of the mentor of {name}?", "Where is the mentor of {name} employed?",
                 "What company employs the mentor of {name}?"],
}  # fmt: skip

MORE_COMPARE = [
    "Which of {name} and {other} was born first?",
    "Who came into the world earlier, {name} or {other}?",
    "Of {name} and {other}, who was born first?",
]

QUESTION_FORMS = (4, 10)
"""The values of WorldConfig.question_forms: question forms per attribute."""


class Phrasings(NamedTuple):
    """The question templates of one world: recall by attribute, two-hop by attribute, comparison."""

    question: dict[str, list[str]]
    two_hop: dict[str, list[str]]
    compare: list[str]


@functools.cache
def phrasings(forms: int) -> Phrasings:
    """The templates a world of `forms` question forms per attribute asks: the original lists, or each with its
    `MORE_*` forms inserted before its held-out last form (built once per value)."""
    if forms == 4:
        return Phrasings(QUESTION, TWO_HOP, COMPARE)

    def more(templates: list[str], extra: list[str]) -> list[str]:
        return templates[:-1] + extra + templates[-1:]

    return Phrasings(
        {a: more(ts, MORE_QUESTION[a]) for a, ts in QUESTION.items()},
        {a: more(ts, MORE_TWO_HOP[a]) for a, ts in TWO_HOP.items()},
        more(COMPARE, MORE_COMPARE),
    )


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
