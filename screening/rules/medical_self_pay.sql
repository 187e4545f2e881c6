-- rule: medical_self_pay
-- title: medical costs the household cannot bear
-- legal basis: Interim Measures for Social Assistance, arts. 11 and 28 (medical assistance); Shaanxi low-income population dynamic monitoring (应救尽救)
-- sources: medical, income
-- A household whose members paid, out of their own pocket over the window, at least
-- $medical_self_pay_yuan yuan, or more than $medical_self_pay_income_share of the
-- household's annual income (when the income extract knows it).
WITH spent AS (
    SELECT m.household_id, sum(c.self_pay_fen) AS self_pay_fen, count(*) AS claims
    FROM medical c JOIN members m USING (person_id)
    WHERE c.settled_on > $as_of - to_days($medical_window_days::INTEGER)
      AND c.settled_on <= $as_of
    GROUP BY m.household_id
),
earned AS (
    SELECT m.household_id, sum(i.annual_fen) AS annual_fen
    FROM income i JOIN members m USING (person_id)
    GROUP BY m.household_id
)
SELECT s.household_id,
       printf('medical self-pay %d yuan over %d claims in %d days%s',
              s.self_pay_fen // 100, s.claims, $medical_window_days::INTEGER,
              CASE WHEN e.annual_fen > 0
                   THEN printf(', %.0f%% of annual income', 100.0 * s.self_pay_fen / e.annual_fen)
                   ELSE '' END) AS finding,
       json_object('self_pay_yuan', s.self_pay_fen // 100, 'claims', s.claims,
                   'annual_income_yuan', e.annual_fen // 100) AS indicators
FROM spent s LEFT JOIN earned e USING (household_id)
WHERE s.self_pay_fen >= $medical_self_pay_yuan * 100::BIGINT
   OR (e.annual_fen > 0 AND s.self_pay_fen > $medical_self_pay_income_share * e.annual_fen)
