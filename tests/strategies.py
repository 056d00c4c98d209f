"""hypothesis strategies shared by the verifier tests."""

from __future__ import annotations

from hypothesis import strategies as st


def mutations(text: str, alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Every string one character away from ``text``: a replacement, insertion or deletion."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        op = draw(st.sampled_from(["replace", "insert", "delete"] if text else ["insert"]))
        if op == "insert":
            at = draw(st.integers(0, len(text)))
            return text[:at] + draw(alphabet) + text[at:]
        at = draw(st.integers(0, len(text) - 1))
        if op == "delete":
            return text[:at] + text[at + 1 :]
        new = draw(alphabet.filter(lambda c: c != text[at]))
        return text[:at] + new + text[at + 1 :]

    return build()
