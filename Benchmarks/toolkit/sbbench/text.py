"""Deterministic synthetic text. Every generator takes an explicit
random.Random so that the same seed gives byte-identical output."""
import random

# A fixed vocabulary, so text is the same on every machine and Python version.
VOCAB = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact be have do say get make go know take see come think look "
         "want give use find tell ask seem feel try leave call good new first last long great little own other old "
         "right big high different small large next early young important few public bad same able to of in for on "
         "with at by from up about into over after beneath under above the and a that I it not he as you this but "
         "his they her she or an will my one all would there their what so out if who which go me when make can like "
         "no just him know take people into year your some could them see other than then now look only come its "
         "over think also back after use two how our work first well way even new want because any these give most "
         "cache token route batch engine queue latency prefix block model kernel tensor memory shard replica").split()


def words(rng, n):
    """n random words from the vocabulary."""
    if n <= 0:
        return ""
    choice = rng.choice
    return " ".join(choice(VOCAB) for _ in range(n))


def block_text(block_id, n=512, namespace="mooncake"):
    """The n-word text of one trace block: a pure function of its id, so equal
    ids give equal text (and equal tokens) wherever they appear."""
    return words(random.Random(f"{namespace}:{block_id}"), n)


def truncated_normal(rng, mean, std, lo, hi=None):
    """A normal draw clipped into [lo, hi] by redrawing (clamped after 100 tries)."""
    for _ in range(100):
        v = rng.gauss(mean, std) if std > 0 else mean
        if v >= lo and (hi is None or v <= hi):
            return v
    return min(max(mean, lo), hi if hi is not None else mean)


def count_words(text):
    return len(text.split())
