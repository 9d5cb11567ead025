"""TRL as the reference trainer of the parity tests: the same LoRA, optimizer and schedule as kubetune's job."""

from __future__ import annotations

import torch

#: The LoRA adapter both sides train (kubetune jobs: ``make_spec``'s default lora section).
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def trl_logged_steps(trainer_class, config_class, model_dir, rows: list[dict], tmp_path, **settings) -> list[dict]:
    """Every log record of ``trainer_class`` (a TRL trainer) trained on ``rows`` on the CPU in fp32.

    ``settings`` are the objective's own config fields plus batch size, steps, learning rate
    and seed; the rest is fixed to kubetune's job: constant schedule, no warm-up or weight
    decay, AdamW, gradient clipping at 1.0, no checkpointing, a log record per step.
    """
    import peft
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(settings["seed"])  # kubetune seeds right before creating the adapter too
    model = peft.get_peft_model(model, peft.LoraConfig(**LORA, task_type="CAUSAL_LM"))
    logs: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, args, state, control, logs_=None, **kwargs):
            logs.append(dict(kwargs.get("logs") or logs_ or {}))

    args = config_class(
        output_dir=str(tmp_path / "trl"),
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        weight_decay=0.0,
        optim="adamw_torch",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        gradient_checkpointing=False,
        bf16=False,  # TRL's default is bf16 autocast; kubetune's is fp32
        max_length=None,
        dataloader_num_workers=0,
        **settings,
    )
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Keep()]
    )
    trainer.train()
    return logs
