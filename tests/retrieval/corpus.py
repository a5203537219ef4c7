# ruff: noqa: E501 -- one topic per line reads better than wrapped prose.
"""A small corpus for retrieval tests: 40 paragraphs on distinct topics, each with a question
that a reader would ask to find it (and that shares few exact words with the other paragraphs)."""

from __future__ import annotations

TOPICS: list[tuple[str, str, str]] = [
    ("volcano", "Volcanoes form where magma from the mantle rises through the crust. Eruptions release lava, ash and sulfur gases, and the 1980 eruption of Mount St. Helens flattened forests for miles.", "How do volcanic eruptions happen and what comes out of them?"),
    ("honeybee", "Honeybees live in colonies ruled by a single queen. Worker bees collect nectar and pollen, communicate the location of flowers with a waggle dance, and store honey in wax combs.", "How do bees tell each other where flowers are?"),
    ("sourdough", "Sourdough bread rises thanks to a starter of wild yeast and lactic acid bacteria. Bakers feed the starter with flour and water, and a long fermentation gives the loaf its tangy flavour.", "What makes sourdough bread rise and taste sour?"),
    ("chess", "In chess, each player starts with sixteen pieces. Castling moves the king two squares toward a rook, and checkmate ends the game when the king cannot escape attack.", "What is castling and how does a chess game end?"),
    ("photosynthesis", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose. Chlorophyll in the chloroplasts absorbs light, and oxygen is released as a by-product.", "How do plants make sugar from light?"),
    ("black_hole", "A black hole is a region of spacetime where gravity is so strong that nothing, not even light, can escape beyond the event horizon. They form when massive stars collapse.", "What is an event horizon and how do black holes form?"),
    ("espresso", "Espresso is brewed by forcing hot water at about nine bars of pressure through finely ground coffee. A good shot has a layer of golden crema on top.", "How is espresso coffee brewed?"),
    ("roman_aqueduct", "Roman aqueducts carried fresh water into cities using a gentle downhill gradient over many kilometres. Arches of stone and concrete crossed valleys, as at the Pont du Gard.", "How did ancient Rome bring water into its cities?"),
    ("tides", "Ocean tides are caused mainly by the gravitational pull of the Moon. Most coasts see two high tides and two low tides each day, and spring tides occur at full and new moon.", "Why does the sea level rise and fall twice a day?"),
    ("vaccines", "Vaccines train the immune system by exposing it to a harmless piece or weakened form of a pathogen. Memory cells then recognise the real infection and respond quickly.", "How do vaccines protect people from disease?"),
    ("marathon", "The marathon is a long-distance running race of 42.195 kilometres. Runners train for months, building endurance with long slow runs and tapering before race day.", "How long is a marathon and how do runners prepare?"),
    ("origami", "Origami is the Japanese art of folding paper into shapes such as cranes and boxes without cutting or gluing. Complex models start from bases like the bird base.", "What is the art of folding paper into cranes called?"),
    ("tcp", "TCP provides reliable, ordered delivery of bytes between programs. It uses a three-way handshake to open a connection and retransmits segments that are not acknowledged.", "How does the TCP protocol guarantee reliable delivery?"),
    ("glacier", "Glaciers are rivers of ice that form where snow accumulates faster than it melts. As they slide downhill they carve U-shaped valleys and leave moraines of rock behind.", "How do glaciers shape valleys?"),
    ("jazz", "Jazz grew out of New Orleans in the early twentieth century, mixing blues, ragtime and brass band music. Improvisation and swing rhythm are at its heart.", "Where did jazz music originate and what defines it?"),
    ("compost", "Composting turns kitchen scraps and garden waste into rich soil. Microbes break down a mix of green nitrogen-rich and brown carbon-rich material, helped by air and moisture.", "How do I turn food scraps into garden soil?"),
    ("solar_panel", "Solar panels convert sunlight into electricity with photovoltaic cells made of silicon. Photons knock electrons loose, creating a direct current that an inverter turns into AC.", "How do photovoltaic cells generate electricity?"),
    ("penguin", "Emperor penguins breed during the Antarctic winter. The male balances the egg on his feet under a fold of skin and fasts for two months while the female feeds at sea.", "Which penguin keeps its egg on its feet through the winter?"),
    ("inflation", "Inflation is the rate at which the general level of prices rises. Central banks raise interest rates to cool demand when inflation runs above their target.", "Why do central banks raise interest rates when prices go up?"),
    ("sushi", "Sushi combines vinegared rice with raw fish, seaweed or vegetables. Nigiri is a hand-pressed mound of rice topped with a slice of fish, while maki is rolled in nori.", "What is the difference between nigiri and maki?"),
    ("earthquake", "Earthquakes happen when stress along a fault is released suddenly and seismic waves shake the ground. Their size is measured on the moment magnitude scale.", "What causes the ground to shake along a fault line?"),
    ("printing_press", "Johannes Gutenberg's printing press, built around 1440, used movable metal type. It made books cheaper and spread literacy across Europe.", "Who invented printing with movable metal type?"),
    ("dna", "DNA is a double helix of two strands held together by base pairs: adenine with thymine and guanine with cytosine. Genes encode the instructions for building proteins.", "Which bases pair together in the DNA double helix?"),
    ("bicycle_gears", "Bicycle gears let a rider keep a comfortable pedalling cadence. A derailleur moves the chain between sprockets; a small front ring and large rear cog make climbing hills easier.", "Which gear combination makes cycling uphill easier?"),
    ("northern_lights", "The northern lights, or aurora borealis, appear when charged particles from the solar wind hit gases in the upper atmosphere, making them glow green and purple.", "What causes the aurora borealis to glow in the sky?"),
    ("pyramids", "The Great Pyramid of Giza was built for the pharaoh Khufu around 2560 BC from more than two million limestone blocks. It was the tallest structure on Earth for millennia.", "For which pharaoh was the Great Pyramid built?"),
    ("sleep", "Sleep runs in cycles of about ninety minutes that alternate between deep non-REM sleep and REM sleep, when most vivid dreaming occurs. Adults need seven to nine hours.", "In which stage of sleep do we dream the most?"),
    ("wine", "Winemaking starts with crushing grapes and letting yeast ferment their sugar into alcohol. Red wine takes its colour from fermenting with the grape skins.", "Why is red wine red?"),
    ("hash_table", "A hash table stores key-value pairs in an array of buckets chosen by a hash function, giving average constant-time lookups. Collisions are handled by chaining or open addressing.", "How does a hash table look up a key so quickly?"),
    ("coral_reef", "Coral reefs are built by tiny animals called polyps that secrete calcium carbonate skeletons. Rising sea temperatures cause bleaching, when corals expel their symbiotic algae.", "What is coral bleaching?"),
    ("violin", "The violin has four strings tuned in fifths, G, D, A and E. Players draw a bow strung with horsehair across the strings, and rosin helps the hair grip.", "How are the strings of a violin tuned?"),
    ("recycling_aluminum", "Recycling aluminium cans saves about ninety-five percent of the energy needed to make new metal from bauxite ore, and the metal can be recycled endlessly.", "How much energy does recycling aluminium cans save?"),
    ("tea_ceremony", "The Japanese tea ceremony is a ritual preparation of powdered green tea called matcha, whisked with a bamboo whisk and served with quiet, precise gestures.", "What tea is whisked during the Japanese tea ceremony?"),
    ("kites", "Kites fly because wind flowing over the sail creates lift while the tether holds them at an angle. Box kites and delta kites suit different wind speeds.", "What keeps a kite up in the air?"),
    ("mars_rover", "NASA's Perseverance rover landed in Jezero Crater on Mars in 2021 to search for signs of ancient microbial life and to collect rock samples for a future return mission.", "Which rover is looking for ancient life in Jezero Crater?"),
    ("cheese", "Cheese is made by curdling milk with rennet, separating the curds from the whey, then pressing and ageing the curds. Cheddar, brie and gouda differ in moisture and ripening.", "How is milk turned into cheese?"),
    ("lighthouse", "Lighthouses warn ships away from dangerous coasts. A Fresnel lens of concentric glass prisms focuses the lamp into a beam visible for many nautical miles.", "What kind of lens focuses a lighthouse beam?"),
    ("yoga", "Yoga combines physical postures called asanas with breathing exercises and meditation. It originated in ancient India and improves flexibility and balance.", "What are asanas and where does yoga come from?"),
    ("blockchain", "A blockchain is a ledger of transactions grouped into blocks, each linked to the previous one by a cryptographic hash, so altering history would require redoing the proof of work.", "Why is it hard to change past records on a blockchain?"),
    ("thunderstorm", "Thunderstorms develop when warm, moist air rises quickly and forms towering cumulonimbus clouds. Lightning heats the air so fast that it expands with a clap of thunder.", "Why does lightning make the sound of thunder?"),
]  # fmt: skip

# Metadata the filter tests use: a category per topic, a year and a flag.
SCIENCE = {
    "volcano", "photosynthesis", "black_hole", "tides", "vaccines", "glacier", "solar_panel", "earthquake", "dna",
    "northern_lights", "coral_reef", "mars_rover", "thunderstorm", "sleep",
}  # fmt: skip
FOOD = {"sourdough", "espresso", "sushi", "wine", "cheese", "tea_ceremony", "compost"}


def category(topic: str) -> str:
    return "science" if topic in SCIENCE else "food" if topic in FOOD else "other"


def metadata(i: int, topic: str) -> dict[str, object]:
    return {"category": category(topic), "year": 2000 + i, "public": i % 2 == 0, "topic": topic}
