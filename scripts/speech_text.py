"""English sentences for the speech corpus, built from this file's own word lists by a small grammar.

The text needs nothing downloaded and carries no third-party licence: the word lists and the
sentence patterns below are written for this project. A pattern is picked at random, then every
slot in it; `make_sentences(n, seed)` returns n distinct sentences, the same ones for the same
seed, each 4 to about 20 words long (a spoken length of roughly 1.5 to 6 seconds).
"""

from __future__ import annotations

import random

NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo",
         "Maria", "Nathan", "Olivia", "Peter", "Rose", "Sam", "Tom", "Victor", "Wendy", "Lucy", "Martin", "Helen")
# Every noun takes the plural "-s".
NOUNS = ("apple", "bird", "boat", "book", "bottle", "bread roll", "bridge", "brother", "button", "candle", "car",
         "chair", "cloud", "coat", "cookie", "cup", "desk", "doctor", "dog", "door", "dream", "drum", "farmer",
         "feather", "field", "flower", "friend", "garden", "gate", "girl", "hammer", "hat", "hill", "horse",
         "house", "island", "jacket", "key", "kitten", "lamp", "letter", "lion", "map", "market", "mirror",
         "mountain", "neighbour", "notebook", "orange", "painter", "paper", "pencil", "picture", "pillow",
         "planet", "pocket", "rabbit", "river", "road", "rock", "sailor", "shoe", "singer", "song", "spoon",
         "star", "stone", "street", "student", "table", "teacher", "ticket", "tower", "train", "tree",
         "window", "winter coat", "word", "garden wall", "village", "basket", "kettle", "rope", "shadow")
ADJECTIVES = ("big", "small", "old", "new", "red", "blue", "green", "yellow", "quiet", "loud", "warm", "cold",
              "heavy", "light", "bright", "dark", "soft", "hard", "happy", "tired", "empty", "broken", "clean",
              "dirty", "strange", "simple", "gentle", "angry", "careful", "lucky", "famous", "tiny", "huge",
              "silver", "golden", "wooden", "narrow", "wide", "sleepy", "hungry", "shiny", "rusty", "busy",
              "friendly", "curious", "muddy", "sweet", "bitter", "round", "smooth")
TRANSITIVE = (("carry", "carried"), ("paint", "painted"), ("find", "found"), ("open", "opened"),
              ("close", "closed"), ("bring", "brought"), ("clean", "cleaned"), ("move", "moved"),
              ("watch", "watched"), ("follow", "followed"), ("fix", "fixed"), ("build", "built"),
              ("sell", "sold"), ("buy", "bought"), ("hide", "hid"), ("lose", "lost"), ("wash", "washed"),
              ("push", "pushed"), ("pull", "pulled"), ("draw", "drew"), ("hold", "held"), ("throw", "threw"),
              ("catch", "caught"), ("visit", "visited"), ("borrow", "borrowed"), ("lift", "lifted"),
              ("touch", "touched"), ("remember", "remembered"), ("describe", "described"), ("keep", "kept"),
              ("send", "sent"), ("take", "took"), ("leave", "left"), ("cover", "covered"), ("fill", "filled"),
              ("measure", "measured"), ("count", "counted"), ("drop", "dropped"), ("mend", "mended"),
              ("deliver", "delivered"))
INTRANSITIVE = (("sleep", "slept"), ("laugh", "laughed"), ("wait", "waited"), ("sing", "sang"),
                ("run", "ran"), ("fall", "fell"), ("shine", "shone"), ("arrive", "arrived"), ("rest", "rested"),
                ("shake", "shook"), ("dance", "danced"), ("travel", "travelled"), ("whistle", "whistled"),
                ("disappear", "disappeared"), ("stop", "stopped"), ("return", "returned"), ("smile", "smiled"),
                ("listen", "listened"), ("wander", "wandered"), ("turn", "turned"))
PREPOSITIONS = ("in", "on", "near", "behind", "under", "beside", "across", "over", "inside", "past",
                "around", "by", "through", "along", "towards")
TIMES = ("this morning", "last night", "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday",
         "on Saturday", "on Sunday", "after dinner", "before breakfast", "at noon", "in the evening",
         "every summer", "last winter", "yesterday", "today", "early in the spring", "at midnight",
         "in the afternoon", "next week", "a long time ago", "once again", "at sunrise", "after lunch")
ADVERBS = ("slowly", "quickly", "quietly", "loudly", "carefully", "suddenly", "happily", "sadly", "gently",
           "again", "twice", "softly", "calmly", "early", "late", "at once", "all day", "for a while")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "twenty", "fifty", "a hundred", "a few", "many", "some")

PATTERNS = (
    "{The_np} {vpast} {the_np} {place}.",
    "{Name} {vpast} {a_np} {time}.",
    "Did {name} {vbase} {the_np} {time}?",
    "{Name} will {vbase} {the_np} {place}.",
    "We {vpast} {number} {plural} {place} {time}.",
    "{The_np} {ipast} {adverb}, and {name} {vpast} {the_np}.",
    "Why is {the_np} so {adj}?",
    "{Name} said that {the_np} was {adj}.",
    "Please {vbase} {the_np} {time}.",
    "When {name} {ipast}, {the_np} {ipast} {adverb}.",
    "I think {the_np} {place} is {adj}.",
    "{Name} and {name} {vpast} {a_np} {place}, but {the_np} {ipast}.",
    "There were {number} {adj} {plural} {place}.",
    "Where did you {vbase} {the_np}?",
    "{Name} {ipast} {place} {time}.",
    "Nobody knew why {the_np} {ipast} {time}.",
    "If you {vbase} {the_np}, {name} will {ibase}.",
    "{The_np} was {adj} and {adj}, so we {vpast} it {place}.",
    "Have you seen {the_np} {place}?",
    "My {noun} {ipast} {adverb} {time}.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng: random.Random, definite: bool) -> str:
    """'the old lamp', 'a tree', 'an empty cup': an adjective half the time."""
    noun = rng.choice(NOUNS)
    phrase = f"{rng.choice(ADJECTIVES)} {noun}" if rng.random() < 0.5 else noun
    return f"the {phrase}" if definite else f"{_article(phrase)} {phrase}"


def _slot(rng: random.Random, name: str) -> str:
    """A random filler for the pattern slot `name` ('The_np' is the capitalised form of 'the_np')."""
    if name[0].isupper() and name != "Name":
        return _slot(rng, name[0].lower() + name[1:]).capitalize()
    fillers = {
        "the_np": lambda: _noun_phrase(rng, True),
        "a_np": lambda: _noun_phrase(rng, False),
        "name": lambda: rng.choice(NAMES), "Name": lambda: rng.choice(NAMES),
        "vpast": lambda: rng.choice(TRANSITIVE)[1], "vbase": lambda: rng.choice(TRANSITIVE)[0],
        "ipast": lambda: rng.choice(INTRANSITIVE)[1], "ibase": lambda: rng.choice(INTRANSITIVE)[0],
        "place": lambda: f"{rng.choice(PREPOSITIONS)} {_noun_phrase(rng, True)}",
        "time": lambda: rng.choice(TIMES), "adverb": lambda: rng.choice(ADVERBS),
        "adj": lambda: rng.choice(ADJECTIVES), "noun": lambda: rng.choice(NOUNS),
        "number": lambda: rng.choice(NUMBERS), "plural": lambda: rng.choice(NOUNS) + "s",
    }
    return fillers[name]()


def make_sentence(rng: random.Random) -> str:
    """One sentence from a random pattern with random fillers, drawn from `rng`."""
    pattern = rng.choice(PATTERNS)
    out, rest = [], pattern
    while "{" in rest:
        before, _, after = rest.partition("{")
        slot, _, rest = after.partition("}")
        out += [before, _slot(rng, slot)]
    return "".join(out) + rest


def make_sentences(count: int, seed: int) -> list[str]:
    """`count` distinct sentences, deterministic given `seed`; a smaller count gives a prefix of a larger one."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    rng, seen, sentences = random.Random(seed), set(), []
    while len(sentences) < count:
        sentence = make_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences
