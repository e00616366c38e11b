"""Generative vision-language models (`AutoModelForImageTextToText`): loading by hub name or folder,
chat prompts, answer-only losses, option scoring, generation, LoRA adapters and their merge.

    from medmm.models.vlm import VisionLanguageModel
    vlm = VisionLanguageModel("google/medgemma-4b-it", lora={"r": 8})
    prompt = vlm.chat_prompt("Is there a fracture?", n_images=1)
    batch = vlm.encode([prompt], [[pil_image]])
    print(vlm.generate(batch, max_new_tokens=16))

Tiny random stand-ins of each family: `medmm.models.vlm.tiny.write_tiny_vlm` (`medmm models tiny`).
Knows no task: what is asked and how answers are scored belongs to `medmm.tasks.vlm`.
"""

from medmm.models.vlm.model import VisionLanguageModel, save_merged

__all__ = ["VisionLanguageModel", "save_merged"]
