"""Deterministic sample catalog and shopper event generator for the demo, tests and benchmarks.

Pure standard library: the same arguments give the same JSON-ready events on every platform and
Python version (``random.Random`` seeded with an int or str is stable).
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BASE_TS_MS", "CATEGORIES", "EVENTS_START_MS", "QUERIES", "background_traffic", "catalog", "shopper_events"]

BASE_TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms; catalog events start here
EVENTS_START_MS = BASE_TS_MS + 86_400_000  # 2026-01-02T00:00:00Z: default start of shopper sessions

_EVENT_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://streamrec.example/sample-data")
_MAX_TITLE_TRIES = 60
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[AEIOUaeiou]|8|11\D|18\D)")  # "a" that should read "an"


def _t(spec: str) -> tuple[str, ...]:
    """Split a ``|``-separated vocabulary string into a tuple."""
    return tuple(spec.split("|"))


def _k(spec: str) -> dict[str, tuple[float, float]]:
    """Parse ``"Kind=lo-hi|..."`` into product kinds with their price ranges."""
    pairs = (item.rsplit("=", 1) for item in spec.split("|"))
    return {name: (float(span.split("-")[0]), float(span.split("-")[1])) for name, span in pairs}


@dataclass(frozen=True)
class _Spec:
    """Vocabulary of one category; ``kinds`` maps product kind to price range."""

    brands: tuple[str, ...]
    lines: tuple[str, ...]
    nums: tuple[str, ...]
    kinds: Mapping[str, tuple[float, float]]
    slots: Mapping[str, tuple[str, ...]]
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]
    extras: Mapping[str, float] = field(default_factory=dict)  # price add-ons per chosen value


_GENDER = _t("Men's|Women's|Unisex")

_SPECS: dict[str, _Spec] = {
    "running-shoes": _Spec(
        _t("Stridewell|Pacefield|Northlane|Velocita|Kinetiq Athletics"),
        _t("Aero|Tempo|Glide|Surge|Cadence|Vapor|Fleetfoot"),
        tuple(str(i) for i in range(1, 13)),
        _k(
            "Road Running Shoe=89-169|Trail Running Shoe=109-179|Racing Flat=99-159|Daily Trainer=89-149"
            "|Running Sneaker=69-119|Marathon Racing Shoe=169-269|Trail Runner=109-169|Tempo Trainer=119-179"
        ),
        {
            "gender": _GENDER,
            "feature": _t("Lightweight|Breathable|Max-Cushion|Carbon-Plated|Waterproof|Wide-Fit|Responsive|Stability"),
            "upper": _t("engineered mesh|knit|recycled ripstop|seamless jacquard mesh"),
            "foam": _t("nitrogen-infused|supercritical|dual-density EVA|bouncy PEBA"),
            "use": _t(
                "tempo runs|long weekend runs|race day|easy recovery runs|technical trail runs|marathon training"
            ),
        },
        ("{brand} {line} {num} {gender} {feature} {kind}", "{brand} {line} {num} {feature} {kind}"),
        (
            "A {feature_l} {kind_l} with a {upper} upper and {foam} foam midsole, built for {use}.",
            "The {line} {num} pairs a {upper} upper with {foam} cushioning for {use}.",
        ),
        {"Carbon-Plated": 40.0},
    ),
    "sneakers": _Spec(
        _t("Courtline|Urbanstep|Loma & Finch|Westbury|Kicksmith"),
        _t("Classic|Court|Metro|Heritage|Avenue|Legacy"),
        _t("72|85|90|Lo|Mid|II|III|Plus"),
        _k(
            "Low-Top Sneaker=55-120|High-Top Sneaker=65-140|Court Sneaker=60-130|Slip-On Sneaker=45-85"
            "|Platform Sneaker=70-150|Skate Sneaker=55-95"
        ),
        {
            "gender": _GENDER,
            "material": _t("Leather|Suede|Canvas|Vegan Leather|Nubuck"),
            "color": _t("Triple White|Black/White|Navy|Olive|Cream/Gum|Bone|Forest Green"),
        },
        (
            "{brand} {line} {num} {gender} {material} {kind} - {color}",
            "{brand} {line} {num} {material} {kind}, {color}",
        ),
        (
            "A casual {kind_l} in {material_l} with a cushioned insole and vulcanized cupsole for everyday streetwear.",
            "Retro {line} styling meets a padded collar and {material_l} upper for all-day lifestyle wear.",
        ),
        {"Canvas": -15.0},
    ),
    "hiking-boots": _Spec(
        _t("Ridgeback|Summitcraft|Alpenhorn|Trailmark|Granite Peak"),
        _t("Ascent|Talus|Cairn|Scree|Ridgeline|Traverse"),
        _t("GTX|2|3|4|Pro|XT|II"),
        _k(
            "Waterproof Hiking Boot=129-229|Mid Hiking Boot=109-189|Backpacking Boot=169-289"
            "|Mountaineering Boot=299-549|Leather Trekking Boot=189-329|Lightweight Hiking Boot=99-169"
            "|Insulated Winter Hiking Boot=149-249"
        ),
        {
            "gender": _GENDER,
            "material": _t("full-grain leather|waterproof nubuck|suede and mesh|synthetic ripstop"),
            "sole": _t("deep-lug rubber outsole|sticky-rubber outsole|self-cleaning lugged outsole"),
            "terrain": _t("rocky alpine trails|muddy multi-day treks|scree and snow|long days in the backcountry"),
        },
        ("{brand} {line} {num} {gender} {kind}", "{brand} {line} {num} {gender} {kind}, Wide Width"),
        (
            "A {kind_l} with a {material} upper and {sole} for {terrain}.",
            "The {line} {num} combines a {material} upper, ankle support and a {sole} for {terrain}.",
        ),
    ),
    "laptops": _Spec(
        _t("Corvex|Lumina|Nimbus|Helix Computing|Arcwave"),
        _t("Aura|Vector|Zenith|Flux|Forge|Slate"),
        _t("13|14|15|16|X1|X3|500|700|900"),
        _k(
            "Ultrabook=899-1399|Gaming Laptop=1099-1999|2-in-1 Convertible Laptop=649-1199|Business Laptop=799-1399"
            "|Creator Laptop=1299-2199|Thin and Light Laptop=549-999"
        ),
        {
            "size": _t('13.3"|14"|15.6"|16"'),
            "cpu": _t("Intel Core Ultra 5|Intel Core Ultra 7|AMD Ryzen 5|AMD Ryzen 7|AMD Ryzen 9"),
            "ram": _t("8GB|16GB|32GB|64GB"),
            "storage": _t("256GB SSD|512GB SSD|1TB SSD|2TB SSD"),
            "screen": _t("OLED|IPS|120Hz IPS|mini-LED|matte anti-glare"),
        },
        ("{brand} {line} {num} {size} {kind}, {cpu}, {ram} RAM, {storage}",),
        (
            "A {size} {kind_l} with an {cpu} processor, {ram} of memory and a {screen} display for work and play.",
            "The {line} {num} packs {ram} RAM and a {storage} into a slim aluminium chassis with a {screen} screen.",
        ),
        {
            "8GB": -100.0,
            "32GB": 200.0,
            "64GB": 500.0,
            "256GB SSD": -60.0,
            "1TB SSD": 100.0,
            "2TB SSD": 250.0,
            "Intel Core Ultra 7": 150.0,
            "AMD Ryzen 7": 120.0,
            "AMD Ryzen 9": 300.0,
        },
    ),
    "headphones": _Spec(
        _t("Sonora|Auralis|Decibel Labs|Quietwave|Bassline Audio"),
        _t("Studio|Air|Pulse|Echo|Halo|Q"),
        _t("1|2|3|5|7|100|300|Pro|Max"),
        _k(
            "Wireless Noise Cancelling Over-Ear Headphones=179-399|True Wireless Noise Cancelling Earbuds=99-279"
            "|On-Ear Bluetooth Headphones=49-149|Wireless Studio Headphones=129-299|Wireless Gaming Headset=69-199"
            "|Sport Earbuds with Ear Hooks=39-129|Open-Ear Bone Conduction Headphones=79-179"
        ),
        {
            "color": _t("Black|Silver|Midnight Blue|Sandstone|Matte White|Graphite"),
            "battery": _t("24-hour|30-hour|40-hour|50-hour"),
            "feature": _t("adaptive noise cancelling|spatial audio|multipoint Bluetooth|hi-res LDAC support"),
            "driver": _t("40mm dynamic|custom 10mm|planar magnetic|dual balanced"),
        },
        ("{brand} {line} {num} {kind} - {color}",),
        (
            "{kind} with {feature}, {driver} drivers and a {battery} battery.",
            "The {line} {num} delivers {feature} and rich, detailed sound from {driver} drivers.",
        ),
    ),
    "coffee": _Spec(
        _t("Brewcraft|Roastery Lane|Highland Bean Co.|Morning Ember|Copperpot Roasters"),
        _t("House|Breakfast|Morning|Italian-Style|Decaf Swiss Water|Cold Brew"),
        _t("250g|340g|500g|1kg|2lb"),
        _k("Whole Bean Coffee=11-19|Ground Coffee=10-17|Espresso Beans=12-20|Compostable Coffee Pods=8-14"),
        {
            "origin": _t(
                "Ethiopian Yirgacheffe|Colombian Huila|Guatemalan Antigua|Kenyan AA|Sumatra Mandheling"
                "|Brazilian Cerrado|Costa Rican Tarrazu|Rwandan Bourbon|Honduran Marcala"
            ),
            "roast": _t("Light Roast|Medium Roast|Medium-Dark Roast|Dark Roast"),
            "note": _t("blueberry|jasmine|citrus zest|dark cherry|red apple|bergamot"),
            "note2": _t("milk chocolate|toasted hazelnut|brown sugar|caramel|cocoa nib|honey"),
        },
        ("{brand} Single-Origin {origin} {roast} {kind} {num}", "{brand} {line} Blend {roast} {kind} {num}"),
        (
            "Small-batch {roast_l} coffee with notes of {note} and {note2}, roasted to order.",
            "A {roast_l} from {brand} with a smooth body and notes of {note2} and {note}.",
        ),
        {"340g": 2.0, "500g": 6.0, "1kg": 18.0, "2lb": 15.0},
    ),
    "cookware": _Spec(
        _t("Ironhearth|Copperleaf|Maison Forge|Kitchenry|Hearthstone"),
        _t("Pro|Classic|Chef's|Signature|Heritage|Everyday"),
        ("",),
        _k(
            "10-Inch Cast Iron Skillet=24-59|12-Inch Cast Iron Skillet=34-79|8-Inch Nonstick Frying Pan=19-45"
            "|11-Inch Nonstick Frying Pan=29-69|3-Quart Stainless Steel Saucepan=39-119"
            "|5.5-Quart Enameled Dutch Oven=69-299|7-Quart Enameled Dutch Oven=89-379|14-Inch Carbon Steel Wok=29-79"
            "|8-Quart Stockpot with Lid=39-129|10-Piece Stainless Steel Cookware Set=149-599"
            "|12-Inch Tri-Ply Saute Pan=59-179"
        ),
        {
            "compat": _t("Induction Compatible|Oven Safe to 500°F|Dishwasher Safe|PFAS-Free"),
            "feature": _t(
                "a tri-ply aluminium core|a pre-seasoned surface|a ceramic nonstick coating"
                "|riveted stay-cool handles|a heavy enameled body"
            ),
        },
        ("{brand} {line} {kind}, {compat}", "{brand} {line} {kind}"),
        (
            "A {kind_l} with {feature} for even heat and easy cleanup.",
            "Built with {feature}, this {kind_l} goes from stovetop to table.",
        ),
    ),
    "books-scifi": _Spec(
        _t("Nebula House|Farlight Press|Orbitale Books|Parsec & Vane|Starglass Publishing"),
        _t("Helix Cycle|Starfall Saga|Deep Reach Trilogy|Lattice Wars|Ember Protocol"),
        tuple(str(i) for i in range(1, 7)),
        _k("Paperback=11-19|Hardcover=21-32|Mass Market Paperback=7-10|Audiobook CD=24-39"),
        {
            "adj": _t("Silent|Hollow|Last|Crimson|Drowned|Iron|Infinite|Ashen|Glass|Distant|Burning|Forgotten"),
            "noun": _t(
                "Meridian|Armada|Lighthouse|Colony|Singularity|Orbit|Archive|Frontier|Machine|Horizon|Cathedral"
            ),
            "author": _t("M. K. Okafor|Lena Varga|Tomas Reyes-Hart|Ada Whitlock|Soren Vale|Priya Natarajan"),
            "theme": _t(
                "sweeping space opera|hard science fiction|cyberpunk|first-contact|time-travel|post-apocalyptic"
            ),
            "premise": _t(
                "a derelict generation ship wakes its last engineer|an AI archivist uncovers a forbidden history"
                "|two rival colonies race to decode an alien signal"
                "|a smuggler crew stumbles onto a war-ending secret"
                "|a linguist must translate a message before the fleet arrives"
                "|Earth's final lighthouse station goes dark"
            ),
        },
        ("The {adj} {noun} ({line} Book {num}) by {author}, {kind}", "The {adj} {noun}: A Novel by {author}, {kind}"),
        ("A {theme} novel in which {premise}.", "In this {theme} story from {brand}, {premise}."),
    ),
    "yoga": _Spec(
        _t("Lotusline|Zenfold|Asana Supply Co.|Breathwork|Sattva Studio"),
        _t("Flow|Balance|Align|Ground|Pure|Studio"),
        _t("2|3|Pro|Plus|Lite"),
        _k(
            "6mm Non-Slip Yoga Mat=29-89|4mm Travel Yoga Mat=25-69|Natural Cork Yoga Block=12-24"
            "|Cotton Yoga Strap with D-Ring=8-16|Buckwheat Meditation Cushion=35-69|Rectangular Yoga Bolster=39-79"
            "|Natural Jute Yoga Mat=39-79|Foam Yoga Wheel=24-49"
        ),
        {
            "color": _t("Sage|Plum|Charcoal|Sand|Ocean Blue|Terracotta|Lavender"),
            "benefit": _t("stable grip|joint-friendly support|reliable alignment|long-lasting comfort"),
            "practice": _t("hot yoga|vinyasa flow|restorative practice|pilates and stretching|daily meditation"),
        },
        ("{brand} {line} {kind} - {color}", "{brand} {line} {num} {kind}, {color}"),
        ("A {kind_l} that offers {benefit} for {practice}.", "Designed for {practice}, this {kind_l} gives {benefit}."),
    ),
    "cameras": _Spec(
        _t("Optiva|Kestrel Imaging|Halden Optics|Prismark|Vantage Photo"),
        _t("X|Z|V|R|Nova|Orca"),
        _t("5|7|9|30|50|100|200"),
        _k(
            "Full-Frame Mirrorless Camera Body=1499-2999|Full-Frame Mirrorless Camera with 24-70mm f/4 Lens=1999-3799"
            "|APS-C Mirrorless Camera with 18-55mm Kit Lens=599-1299|Compact Digital Camera with 1-Inch Sensor=449-1099"
            "|Waterproof Action Camera=199-449|Medium Format Mirrorless Camera Body=3999-6999"
            "|Bridge Camera with 60x Optical Zoom=399-899"
        ),
        {
            "video": _t("4K/30p|4K/60p|4K/120p|6K"),
            "mp": _t("20MP|24MP|26MP|33MP|45MP"),
            "af": _t("subject-detection autofocus|5-axis in-body stabilization|dual card slots|a weather-sealed body"),
        },
        ("{brand} {line}-{num} {kind}, {video} Video",),
        (
            "Capture sharp {mp} stills and {video} video with {af} and fast hybrid autofocus.",
            "The {line}-{num} combines a {mp} sensor, {af} and a bright electronic viewfinder.",
        ),
    ),
    "kids-toys": _Spec(
        _t("Tinkertown|Brightblocks|Wobblewood|Pipsqueak Play|Little Comet"),
        _t("Explorer|Junior|Discovery|Wonder|Builder|Adventure"),
        _t("3+|4+|5+|6+|3-6|4-8|6-10"),
        _k(
            "Magnetic Building Tiles=29-79|Wooden Stacking Rainbow=19-39|Plush Dinosaur=12-29"
            "|STEM Robot Coding Kit=49-129|Wooden Dollhouse with Furniture=79-189|Remote Control Monster Truck=29-69"
            "|Play Kitchen Set=59-159|Wooden Puzzle Set=12-29|Science Experiment Kit=19-45"
            "|Musical Activity Table=29-59"
        ),
        {
            "skill": _t(
                "fine motor skills|imaginative play|early coding logic|problem solving|creativity and counting"
            ),
            "safety": _t("non-toxic paints|BPA-free plastics|sustainably sourced wood|child-safe rounded edges"),
        },
        ("{brand} {line} {kind}, Ages {num}",),
        (
            "A {kind_l} that encourages {skill}, made with {safety}.",
            "Great for {skill}, this {kind_l} is made with {safety}.",
        ),
    ),
    "skincare": _Spec(
        _t("Dermaluxe|Glowfield|Purelle|Botanica Lab|Velvetine"),
        _t("Clinical|Pure|Radiance|Hydra|Calm|Renew"),
        _t("30ml|50ml|100ml|150ml"),
        _k(
            "Hyaluronic Acid Hydrating Serum=14-39|Vitamin C Brightening Serum=16-45|Gentle Foaming Cleanser=9-24"
            "|Daily Moisturizer SPF 30=14-34|Retinol Night Cream=19-49|Niacinamide Pore Toner=11-26"
            "|Ceramide Barrier Cream=15-36|Mineral Sunscreen SPF 50=14-32|Peptide Eye Cream=22-54"
            "|Exfoliating AHA/BHA Toner=12-29"
        ),
        {
            "skin": _t("Dry Skin|Oily Skin|Sensitive Skin|Combination Skin|All Skin Types"),
            "ingredient": _t("squalane|green tea extract|panthenol|centella asiatica|colloidal oatmeal|niacinamide"),
            "benefit": _t(
                "hydrates and plumps|evens skin tone|soothes redness|strengthens the barrier|refines texture"
            ),
        },
        ("{brand} {line} {kind} for {skin}, {num}",),
        (
            "A lightweight {kind_l} with {ingredient} that {benefit} without clogging pores.",
            "Formulated with {ingredient}, this {kind_l} {benefit}.",
        ),
        {"100ml": 6.0, "150ml": 10.0},
    ),
    "camping": _Spec(
        _t("Pinecrest Outfitters|Basecamp Co.|Wildhaven|Emberfield|Northstar Gear"),
        _t("Trailhead|Nomad|Summit|Canyon|Alpine|Backcountry"),
        _t("2|3|UL|Plus|XL|Lite|Pro"),
        _k(
            "2-Person Backpacking Tent=149-449|4-Person Dome Tent=99-299|6-Person Family Cabin Tent=179-499"
            "|20°F Mummy Sleeping Bag=79-299|40°F Rectangular Sleeping Bag=39-99|Self-Inflating Sleeping Pad=49-129"
            "|Ultralight Inflatable Sleeping Pad=79-199|Portable Two-Burner Camp Stove=59-159"
            "|Rechargeable LED Camp Lantern=19-49|Ultralight Camping Hammock=29-89|Folding Camp Chair=29-119"
            "|50L Hiking Backpack=99-279"
        ),
        {
            "color": _t("Forest Green|Desert Tan|Slate Grey|Burnt Orange|Glacier Blue"),
            "adj": _t("packable|durable|weatherproof|easy-setup"),
            "feature": _t("ripstop nylon construction|a compact stuff sack|taped seams|YKK zippers"),
            "trip": _t("weekend car camping|multi-day backpacking trips|festival season|national park road trips"),
        },
        ("{brand} {line} {num} {kind}", "{brand} {line} {kind} - {color}"),
        (
            "A {adj} {kind_l} with {feature}, ready for {trip}.",
            "Made for {trip}, this {adj} {kind_l} comes with {feature}.",
        ),
    ),
}

CATEGORIES: tuple[str, ...] = tuple(_SPECS)
"""Category slugs, in catalog round-robin order."""

QUERIES: dict[str, str] = {
    "running-shoes": "cushioned running shoes",
    "sneakers": "white leather sneakers",
    "hiking-boots": "waterproof hiking boots",
    "laptops": "lightweight laptop for work",
    "headphones": "noise cancelling headphones",
    "coffee": "whole bean coffee",
    "cookware": "cast iron skillet",
    "books-scifi": "science fiction novels",
    "yoga": "non slip yoga mat",
    "cameras": "mirrorless camera",
    "kids-toys": "educational toys for kids",
    "skincare": "moisturizer for dry skin",
    "camping": "backpacking tent",
}
"""Natural search phrase a shopper types for each category."""


def _lower(text: str) -> str:
    """Lowercase for running text, keeping acronyms and units such as STEM, SPF or 20°F."""
    return " ".join(w if "".join(c for c in w if c.isalpha()).isupper() else w.lower() for w in text.split())


def _draw(spec: _Spec, rng: random.Random) -> dict[str, str]:
    """Pick one value per vocabulary slot, plus ``*_l`` lowercase variants."""
    fields = {
        "brand": rng.choice(spec.brands),
        "line": rng.choice(spec.lines),
        "num": rng.choice(spec.nums),
        "kind": rng.choice(tuple(spec.kinds)),
    }
    for name, values in spec.slots.items():
        fields[name] = rng.choice(values)
    fields.update({f"{k}_l": _lower(v) for k, v in list(fields.items())})
    return fields


def _price(spec: _Spec, fields: dict[str, str], rng: random.Random) -> float:
    """A shop-like price such as 129.99 from the kind's range plus option add-ons."""
    lo, hi = spec.kinds[fields["kind"]]
    amount = rng.uniform(lo, hi) + sum(spec.extras.get(v, 0.0) for v in set(fields.values()))
    return round(max(1.0, math.floor(amount)) + rng.choice((0.99, 0.99, 0.95, 0.49, 0.0)), 2)


def catalog(n: int = 400, seed: int = 7) -> list[dict[str, object]]:
    """Return ``n`` deterministic product upsert events spread evenly (round-robin) over CATEGORIES.

    ``catalog(m, seed)`` is a prefix of ``catalog(n, seed)`` for ``m <= n``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    seen: set[str] = set()
    products: list[dict[str, object]] = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        spec = _SPECS[category]
        for _ in range(_MAX_TITLE_TRIES):
            fields = _draw(spec, rng)
            title = " ".join(rng.choice(spec.titles).format_map(fields).split())
            if title not in seen:
                break
        else:  # vocabulary exhausted (very large n): disambiguate by index
            title = f"{title}, Edition {i + 1}"
        seen.add(title)
        description = _A_BEFORE_VOWEL.sub(r"\1n ", rng.choice(spec.descriptions).format_map(fields))
        products.append(
            {
                "event_id": f"prod-{seed}-{i}",
                "ts": BASE_TS_MS + i * 1_000,
                "schema_version": 1,
                "op": "upsert",
                "product_id": f"p{i + 1:05d}",
                "title": title,
                "description": description[:1].upper() + description[1:],
                "category": category,
                "brand": fields["brand"],
                "price": _price(spec, fields, rng),
                "in_stock": rng.random() < 0.92,
            }
        )
    return products


def _as_float(value: object) -> float:
    """Narrow a JSON number (not a bool) to float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected number, got {value!r}")
    return float(value)


def _in_stock(products: list[dict[str, object]], category: str) -> list[dict[str, object]]:
    """In-stock products of one category, in catalog order."""
    return [p for p in products if p.get("category") == category and p.get("in_stock") is True]


def shopper_events(  # noqa: PLR0917 -- documented positional signature shared by demo, tests and benchmarks
    products: list[dict[str, object]],
    user_id: str,
    category: str,
    n_clicks: int = 6,
    purchase: bool = True,
    seed: int = 11,
    start_ms: int | None = None,
) -> list[tuple[str, dict[str, object]]]:
    """Return one shopper's search, clicks and optional purchase in ``category`` as (kind, event) pairs.

    Clicks hit ``n_clicks`` distinct in-stock products of the category; the purchase (if any) is one
    of the clicked products. Timestamps start at ``start_ms`` (default EVENTS_START_MS) and grow by
    2-9 seconds per event. Raises ValueError for an unknown category, too few in-stock products, or
    a purchase without clicks.
    """
    if category not in QUERIES:
        raise ValueError(f"unknown category {category!r}")
    pool = _in_stock(products, category)
    if n_clicks < 0 or n_clicks > len(pool):
        raise ValueError(f"need 0 <= n_clicks <= {len(pool)} in-stock {category} products, got {n_clicks}")
    if purchase and n_clicks == 0:
        raise ValueError("a purchase needs at least one click")
    rng = random.Random(f"shopper|{seed}|{user_id}|{category}")
    ts = EVENTS_START_MS if start_ms is None else start_ms
    namespace = f"{user_id}|{category}|{seed}|{ts}"
    events: list[tuple[str, dict[str, object]]] = []

    def emit(kind: str, **fields: object) -> None:
        nonlocal ts
        if events:
            ts += rng.randint(2_000, 9_000)
        event_id = str(uuid.uuid5(_EVENT_NS, f"{namespace}|{len(events)}"))
        events.append((kind, {"event_id": event_id, "ts": ts, "schema_version": 1, "user_id": user_id, **fields}))

    emit("search", query=QUERIES[category])
    clicked = rng.sample(pool, n_clicks)
    positions = sorted(rng.sample(range(1, max(24, n_clicks) + 1), n_clicks))
    for product, position in zip(clicked, positions, strict=True):
        emit("click", product_id=product["product_id"], position=position)
    if purchase:
        bought = rng.choice(clicked)
        emit("purchase", product_id=bought["product_id"], quantity=1, price=_as_float(bought["price"]))
    return events


def background_traffic(
    products: list[dict[str, object]], n_users: int = 50, events_per_user: int = 8, seed: int = 13
) -> list[tuple[str, dict[str, object]]]:
    """Return deterministic traffic of users ``u0001``.. interleaved by timestamp.

    Each user browses one or two distinct categories (a search, clicks and sometimes a purchase per
    category): ``events_per_user`` events in total unless a category has too few in-stock products.
    Sessions start within the first hour after EVENTS_START_MS.
    """
    if n_users < 0 or events_per_user < 1:
        raise ValueError("need n_users >= 0 and events_per_user >= 1")
    stock = {c: len(_in_stock(products, c)) for c in CATEGORIES}
    available = [c for c in CATEGORIES if stock[c] > 0]
    if n_users and not available:
        raise ValueError("no in-stock products of any known category")
    rng = random.Random(f"background|{seed}")
    events: list[tuple[str, dict[str, object]]] = []
    for u in range(1, n_users + 1):
        user_id = f"u{u:04d}"
        two = events_per_user >= 4 and len(available) >= 2 and rng.random() < 0.4
        cats = rng.sample(available, 2 if two else 1)
        budgets = [events_per_user - events_per_user // 2, events_per_user // 2] if two else [events_per_user]
        ts = EVENTS_START_MS + rng.randrange(3_600_000)
        for category, budget in zip(cats, budgets, strict=True):
            buy = budget >= 3 and rng.random() < 0.3
            clicks = min(budget - 1 - int(buy), stock[category])
            session = shopper_events(
                products,
                user_id,
                category,
                n_clicks=clicks,
                purchase=buy and clicks > 0,
                seed=rng.randrange(2**31),
                start_ms=ts,
            )
            events.extend(session)
            ts = int(_as_float(session[-1][1]["ts"])) + rng.randint(60_000, 600_000)
    events.sort(key=lambda e: (_as_float(e[1]["ts"]), str(e[1]["event_id"])))
    return events
