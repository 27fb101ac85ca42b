"""The finite choice sets the world draws from. Each attribute's set size fixes its bits exactly.

Every value is one word (or, for dates, three), so the world tokenizer keeps facts whole. Names are two
words, drawn from first x last; the pools are large enough that entities never share a full name.
"""

FIRST_NAMES = [
    "Ada", "Alan", "Alma", "Amir", "Ana", "Anders", "Aria", "Arlo", "Asha", "Aurel", "Bea", "Boris", "Bruno",
    "Carla", "Cato", "Celia", "Dario", "Dana", "Dina", "Elias", "Elif", "Emil", "Enzo", "Esme", "Farah", "Felix",
    "Freya", "Gael", "Greta", "Hana", "Hugo", "Ida", "Ilya", "Ines", "Ivo", "Jana", "Joel", "Juno", "Kai", "Kira",
    "Lars", "Lena", "Leon", "Lina", "Luca", "Mara", "Milo", "Mira", "Nadia", "Nico", "Nina", "Noor", "Olaf",
    "Omar", "Orla", "Otto", "Paz", "Pia", "Quinn", "Rafa", "Rhea", "Rosa", "Rui", "Sami", "Sara", "Sven", "Tara",
    "Teo", "Uma", "Vera", "Viggo", "Wren", "Yara", "Yusuf", "Zara", "Zeno",
]  # fmt: skip

LAST_NAMES = [
    "Abara", "Alder", "Amsel", "Baran", "Becker", "Bianchi", "Borsa", "Calder", "Castell", "Cerny", "Dahl",
    "Delacroix", "Dorn", "Duarte", "Eklund", "Esposito", "Falk", "Ferrer", "Fontaine", "Garzon", "Greco",
    "Halvorsen", "Haddad", "Ibarra", "Ivanova", "Jansen", "Jovic", "Kaplan", "Karlsson", "Kovac", "Lindqvist",
    "Lorenz", "Lund", "Madsen", "Marquez", "Moreau", "Nakamura", "Navarro", "Nowak", "Okafor", "Olsen", "Ortiz",
    "Pardo", "Petrov", "Quint", "Ramos", "Reyes", "Rossi", "Sato", "Schulz", "Serrano", "Silva", "Soto", "Strand",
    "Tanaka", "Torres", "Ueda", "Varga", "Vidal", "Wagner", "Weiss", "Xu", "Yilmaz", "Zeller",
]  # fmt: skip

CITIES = [
    "Lisbon", "Porto", "Madrid", "Seville", "Valencia", "Paris", "Lyon", "Marseille", "Brussels", "Antwerp",
    "Amsterdam", "Utrecht", "Berlin", "Hamburg", "Munich", "Vienna", "Zurich", "Geneva", "Milan", "Turin",
    "Rome", "Naples", "Athens", "Sofia", "Prague", "Krakow", "Warsaw", "Budapest", "Zagreb", "Belgrade",
    "Oslo", "Bergen", "Stockholm", "Malmo", "Helsinki", "Tallinn", "Riga", "Vilnius", "Dublin", "Cork",
    "Edinburgh", "Glasgow", "Cardiff", "Bristol", "Leeds", "Reykjavik", "Istanbul", "Ankara",
]  # fmt: skip

UNIVERSITIES = [
    "Aldridge", "Bellmont", "Carrow", "Dunmore", "Easton", "Fairholt", "Glenrock", "Harrowgate", "Ivybridge",
    "Juniper", "Kestrel", "Larkspur", "Merriton", "Northvale", "Oakhurst", "Pemberley", "Queensfield",
    "Ravenmoor", "Stonebridge", "Thornbury", "Umberfield", "Valemont", "Westbrook", "Yarrowdale",
]  # fmt: skip

EMPLOYERS = [
    "Acmetrix", "Bluefin", "Cobaltis", "Driftline", "Emberlabs", "Foxglove", "Granitex", "Halcyon", "Ironleaf",
    "Jadeport", "Kinetica", "Lumenra", "Moraine", "Nimbusoft", "Orbitalis", "Pinecrest", "Quasarix", "Redwing",
    "Solstice", "Tidewater", "Umbrel", "Vantora", "Wavecrest", "Xenolith", "Yellowtail", "Zephyra", "Arclight",
    "Brightwell", "Cinderfall", "Dovetail", "Evergrain", "Flintlock",
]  # fmt: skip

FIELDS = [
    "physics", "chemistry", "biology", "geology", "astronomy", "mathematics", "statistics", "economics",
    "history", "philosophy", "linguistics", "architecture", "medicine", "law", "music", "sociology",
]  # fmt: skip

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip
DAYS = [str(d) for d in range(1, 29)]  # 28 days keeps every (day, month) valid
YEARS = [str(y) for y in range(1950, 2000)]

# Distractor chatter for sessions: says nothing about any entity.
CHATTER = [
    "The weather has been awful all week.", "I finally fixed the leaking tap in the kitchen.",
    "My train was late again this morning.", "I am thinking about learning to paint.",
    "The coffee machine at the office broke down.", "We watched a long film last night.",
    "I need to buy new running shoes.", "The garden needs a lot of work this spring.",
    "My neighbour plays the drums every evening.", "I read a good book about sailing.",
    "The traffic downtown was terrible today.", "I made soup for dinner yesterday.",
    "Our team meeting ran over by an hour.", "I lost my umbrella on the bus.",
    "The library is closed for repairs.", "I tried a new bakery near the station.",
    "It might snow later this week.", "I have been sleeping badly lately.",
    "The museum has a new exhibition.", "My phone battery dies too quickly.",
]  # fmt: skip
REPLIES = ["Thanks, I will remember that.", "Noted.", "Good to know.", "Understood.", "Got it, thank you.",
           "I see.", "That makes sense.", "Okay."]  # fmt: skip
