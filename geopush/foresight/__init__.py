"""Foresight (SPEC section 16): what an offer would have done, replayed before it goes live."""
