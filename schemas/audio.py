"""The audio contract every step and every reader of the shards shares.

Prepared audio is float32 mono at `TARGET_SAMPLE_RATE_HZ`; what the shards
store, and so what every measure and every code is taken on, is its 16-bit PCM
form (`PCM16_SCALE` steps per unit amplitude).
"""

TARGET_SAMPLE_RATE_HZ = 16000
"""The sample rate of all prepared audio: GLM-4-Voice's Whisper front end expects 16 kHz."""

PCM16_SCALE = 32768.0
"""int16 value k stands for amplitude k / PCM16_SCALE (libsndfile's int16 → float rule)."""
