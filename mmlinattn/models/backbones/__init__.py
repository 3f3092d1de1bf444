# Each backbone module registers its class in the MMEngine root MODELS registry on import.
__all__ = []
