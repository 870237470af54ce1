"""The publish rate limit of one WebSocket connection."""

from __future__ import annotations


class TokenBucket:
    """Allow *rate* actions per second on average, in bursts of up to *burst*."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether there was."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
