-- Service quality (SPEC section 14): answers to feedback requests, and the recovery cases a
-- low score opens.

CREATE TABLE feedback_responses (
    response_id     uuid PRIMARY KEY,
    store_id        uuid NOT NULL,
    -- The dwell event (the verified visit) answered: one answer per visit.
    visit_event_id  uuid NOT NULL,
    -- Who answered; erasure sets both to NULL and deletes the comment.
    device_id       uuid,
    customer_id     text,
    delivery_id     uuid,
    overall         smallint NOT NULL CHECK (overall BETWEEN 1 AND 5),
    -- {"reliability": 1-5, ...}: the dimensions the customer scored, and their expectations.
    dimensions      jsonb NOT NULL DEFAULT '{}',
    expectations    jsonb NOT NULL DEFAULT '{}',
    comment         text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX feedback_responses_visit ON feedback_responses (visit_event_id);
CREATE INDEX feedback_responses_store ON feedback_responses (store_id, created_at);
CREATE INDEX feedback_responses_created ON feedback_responses (created_at);
CREATE INDEX feedback_responses_device ON feedback_responses (device_id)
    WHERE device_id IS NOT NULL;
CREATE INDEX feedback_responses_customer ON feedback_responses (customer_id)
    WHERE customer_id IS NOT NULL;

CREATE TABLE service_cases (
    case_id            uuid PRIMARY KEY,
    response_id        uuid NOT NULL,
    store_id           uuid NOT NULL,
    device_id          uuid,
    customer_id        text,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'contacted', 'resolved')),
    first_response_at  timestamptz,
    resolved_at        timestamptz,
    resolution         text,
    -- The first verified visit after opening, within [feedback] recovery_window_days; kept
    -- once seen so erasure of the visit's identifiers does not undo it.
    recovered_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_cases_opened ON service_cases (opened_at, case_id);
CREATE INDEX service_cases_store ON service_cases (store_id, opened_at);
CREATE INDEX service_cases_status ON service_cases (status, opened_at);
CREATE INDEX service_cases_device ON service_cases (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX service_cases_customer ON service_cases (customer_id)
    WHERE customer_id IS NOT NULL;
