"""The small track: the recipes compared on bouncing-shape videos with known ground truth, run by the full track's
own stage code and :class:`full.model.CausalWanTransformer3DModel` at a small size (``cf-ref full compare``).

``detect`` finds each captioned shape by colour in a generated video, ``metrics`` scores videos against the known
generative process, ``settings`` holds the presets (``smoke``, ``small``), ``run`` drives one seed's stages,
``compare`` writes the outputs, ``figures`` draws them.
"""
