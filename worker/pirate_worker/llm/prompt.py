"""The conversation that asks a provider to align one scraped record to an HSDS aligned document.

A conversation is the system prompt, one user message holding the scraped record exactly as
enqueued (canonical JSON text), and, on a retry, one more user message that starts with
:data:`FEEDBACK_HEADER` and lists the validation errors of the previous answer.
"""

from __future__ import annotations

from typing import Final

from pirate_worker.llm.base import Message

SYSTEM_PROMPT: Final = """\
You align scraped food-pantry listings to the Open Referral Human Services Data Specification \
(HSDS 3). The user message is one record from a web scraper, as JSON; its fields and wording \
differ from one scraper to the next (flat fields, nested objects, or a block of free text). \
Answer with one aligned document that matches the given JSON schema: the organization that \
runs the pantry, the services it offers, and the locations where it operates.

Rules:
1. Never invent data. Every value must come from the record. When the record does not say, \
use null for an optional field (or an empty list), never a guess or a placeholder such as \
"N/A", "unknown" or an example value.
2. Do not output identifiers: the database assigns ids and links the records.
3. organization.name is the pantry's or its operator's name as written. \
organization.description summarises what the record says about it in one or two sentences.
4. One service per distinct offering the record lists (for example "hot meals", "emergency \
groceries", "SNAP application help"), named as listed with a capital first letter, status \
"active" unless the record says it is closed or paused. Put who may use it (income limits, \
residency, age) in eligibility_description, copied from the record.
5. One location per place the record names, location_type "physical" for a street address. \
Put the street in address_1, then city, state_province (the two-letter code for US states), \
postal_code, address_type "physical", and country "US" when the state is a US state; if the \
country cannot be told, leave the address out rather than guess. Use latitude and longitude \
only when the record gives coordinates.
6. Opening hours become schedules on the location: freq "WEEKLY", byday as comma-separated \
two-letter days in order (MO,TU,WE,TH,FR,SA,SU; "Mon-Sat" is MO,TU,WE,TH,FR,SA), opens_at and \
closes_at as 24-hour HH:MM ("8am" is 08:00, "4:30pm" is 16:30), and description holding the \
hours text as written. Use one schedule per distinct time range. If the hours cannot be read \
that way, give a single schedule with only the description.
7. Phone numbers go in phones as written (number), type "voice" for a plain phone line; give \
them to the organization and to the location they belong to. Email and website go on the \
organization when given.
8. Answer with the JSON document only: no prose, no Markdown fences.
"""

#: First line of the user note that sends a failed answer's validation errors back for a retry.
FEEDBACK_HEADER: Final = (
    "Your previous answer did not validate against the aligned document schema. "
    "Answer again with the complete corrected document. Errors:"
)


def build_messages(content: str, feedback: list[str] | None = None) -> list[Message]:
    """Return the conversation for one scraped record: system prompt, the record, any feedback.

    ``content`` is the scraped record as enqueued; ``feedback`` lists the validation errors of a
    previous answer and becomes a further user note, so the record message stays byte-identical
    across retries.
    """
    messages = [Message(role="system", content=SYSTEM_PROMPT), Message(role="user", content=content)]
    if feedback:
        note = "\n".join([FEEDBACK_HEADER, *(f"- {error}" for error in feedback)])
        messages.append(Message(role="user", content=note))
    return messages


def scraped_content(messages: list[Message]) -> str | None:
    """Return the scraped record of a conversation: the last user message that is not feedback."""
    for message in reversed(messages):
        if message.role == "user" and not message.content.startswith(FEEDBACK_HEADER):
            return message.content
    return None
