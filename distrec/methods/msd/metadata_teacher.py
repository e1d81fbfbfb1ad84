"""The metadata teacher (ours): knowledge records written from real metadata, no LLM.

Same record layout as an LLM teacher's answer (explicit keywords, implicit keywords, rationale):
items from title, year and genres; users from demographics and the top genres of their liked
history. Fast and deterministic: for tests, and as a teacher ablation.
"""

from __future__ import annotations

# What a genre suggests beyond its name (the "implicit" keywords).
GENRE_IMPLICIT = {
    "Action": "thrilling, fast-paced", "Adventure": "epic, journey", "Animation": "colourful, family",
    "Children's": "family-friendly, light", "Comedy": "funny, light-hearted", "Crime": "gritty, suspense",
    "Documentary": "factual, educational", "Drama": "emotional, character-driven",
    "Fantasy": "magical, imaginative", "Film-Noir": "dark, cynical", "Horror": "scary, tense",
    "Musical": "songs, upbeat", "Mystery": "puzzling, clever", "Romance": "love, heartfelt",
    "Sci-Fi": "futuristic, speculative", "Thriller": "suspenseful, tense", "War": "historical, intense",
    "Western": "frontier, classic", "unknown": "obscure",
}


def _genres(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def _implicit(genres: list[str]) -> str:
    words = []
    for g in genres:
        words += [w.strip() for w in GENRE_IMPLICIT.get(g, g.lower()).split(",")]
    return ", ".join(dict.fromkeys(words)) or "general audience"


def _era(year: str) -> str:
    return f"{year[:3]}0s" if len(year) == 4 and year.isdigit() else ""


def item_knowledge(fields: dict) -> str:
    """Movie wording when the item has a year (MovieLens); otherwise a catalog item's."""
    genres = _genres(fields.get("genres", ""))
    era = _era(fields.get("year", ""))
    if not era:
        return _catalog_item_knowledge(fields, genres)
    return (
        f"Explicit keywords: {fields.get('title', '')}, {', '.join(genres) or 'no genre'}, {era} film\n"
        f"Implicit keywords: {_implicit(genres)}\n"
        f"Rationale: a {era} {' and '.join(genres).lower() or 'film'} for viewers who like "
        f"{_implicit(genres[:1])} stories."
    )


def _catalog_item_knowledge(fields: dict, genres: list[str]) -> str:
    facts = [fields.get("title", ""), *genres, fields.get("attributes", "")]
    return (
        f"Explicit keywords: {', '.join(f for f in facts if f)}\n"
        f"Implicit keywords: {_implicit(genres)}\n"
        f"Rationale: an item in {' and '.join(genres).lower() or 'no category'} for people who like "
        f"{_implicit(genres[:1])}."
    )


def _age_band(age: str) -> str:
    if not age.isdigit():
        return "unknown age"
    a = int(age)
    return "teenager" if a < 20 else "young adult" if a < 30 else "adult" if a < 50 else "senior"


def user_knowledge(fields: dict) -> str:
    top = _genres(fields.get("top_genres", ""))
    if not any(fields.get(k) for k in ("age", "gender", "occupation")):  # no demographics (e.g. Amazon)
        return (
            f"Explicit keywords: likes {', '.join(top) or 'nothing yet'}\n"
            f"Implicit keywords: {_implicit(top)}\n"
            f"Rationale: a user whose liked items are mostly {' and '.join(top).lower() or 'unknown'}."
        )
    band = _age_band(fields.get("age", ""))
    explicit = ", ".join(x for x in (band, fields.get("gender", ""), fields.get("occupation", "")) if x)
    return (
        f"Explicit keywords: {explicit}, likes {', '.join(top) or 'no genre yet'}\n"
        f"Implicit keywords: {_implicit(top)}\n"
        f"Rationale: a {band} {fields.get('occupation', 'viewer')} whose liked movies are mostly "
        f"{' and '.join(top).lower() or 'unknown'}."
    )


class MetadataTeacher:
    def generate(self, level: str, fields: list[dict], prompts: list[str], system: str = "",
                 prefixes: list[str] | None = None) -> list[str]:
        make = item_knowledge if level == "item" else user_knowledge
        return [make(f) for f in fields]
