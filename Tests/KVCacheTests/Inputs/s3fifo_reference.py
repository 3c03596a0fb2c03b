"""Reference S3-FIFO (Yang et al., SOSP 2023, Algorithm 1) written directly
from the paper's pseudo-code, independent of the Swift code, plus a
deterministic Zipf-like trace. Regenerate the fixtures with
    python3 s3fifo_reference.py
which writes s3fifo.trace.txt (one key per line) and, per capacity,
s3fifo.expected-C.txt (H/M per access)."""
import random
from collections import OrderedDict


class S3FIFO:
    def __init__(self, capacity, small_ratio=0.1, threshold=1):
        self.cap = capacity
        self.small_cap = max(1, round(capacity * small_ratio))
        self.ghost_cap = max(1, capacity - self.small_cap)
        self.threshold = threshold
        self.S, self.M, self.G = OrderedDict(), OrderedDict(), OrderedDict()  # last = newest (head)
        self.freq = {}

    def size(self):
        return len(self.S) + len(self.M)

    def access(self, x):
        if x in self.S or x in self.M:
            self.freq[x] = min(self.freq[x] + 1, 3)
            return True
        while self.size() >= self.cap:
            self.evict()
        if x in self.G:
            del self.G[x]
            self.M[x] = True
        else:
            self.S[x] = True
        self.freq[x] = 0
        return False

    def evict(self):
        while self.size() > 0:
            if len(self.S) >= self.small_cap or not self.M:
                if self.evict_small():
                    return
            elif self.evict_main():
                return

    def evict_small(self):
        while self.S:
            t, _ = self.S.popitem(last=False)  # tail = oldest
            if self.freq[t] >= self.threshold:
                self.freq[t] = 0
                self.M[t] = True
                continue
            del self.freq[t]
            self.G[t] = True
            while len(self.G) > self.ghost_cap:
                self.G.popitem(last=False)
            return True
        return False

    def evict_main(self):
        while self.M:
            t, _ = self.M.popitem(last=False)
            if self.freq[t] > 0:
                self.freq[t] -= 1
                self.M[t] = True
                continue
            del self.freq[t]
            return True
        return False


if __name__ == "__main__":
    rnd = random.Random(2023)
    keys = [int(1000 / (rnd.random() * 0.98 + 0.02)) % 700 for _ in range(6000)]  # skewed, with a long tail
    with open("s3fifo.trace.txt", "w") as f:
        f.write("\n".join(map(str, keys)) + "\n")
    for cap in (20, 100, 300):
        c = S3FIFO(cap)
        with open(f"s3fifo.expected-{cap}.txt", "w") as f:
            f.write("".join("H" if c.access(k) else "M" for k in keys) + "\n")
