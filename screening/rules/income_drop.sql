-- rule: income_drop
-- title: household income fell sharply
-- legal basis: Interim Measures for Social Assistance, arts. 9 and 47 (sudden hardship); Shaanxi low-income population dynamic monitoring (应保尽保)
-- sources: income
-- A household whose annual income (all members, all employers) fell by more than
-- $income_drop_share from the year before.
WITH household AS (
    SELECT m.household_id, sum(i.prev_annual_fen) AS prev_fen, sum(i.annual_fen) AS now_fen
    FROM income i JOIN members m USING (person_id)
    GROUP BY m.household_id
)
SELECT household_id,
       printf('annual income fell from %d to %d yuan (-%.0f%%)',
              prev_fen // 100, now_fen // 100, 100.0 * (prev_fen - now_fen) / prev_fen) AS finding,
       json_object('prev_annual_yuan', prev_fen // 100, 'annual_yuan', now_fen // 100,
                   'drop_pct', round(100.0 * (prev_fen - now_fen) / prev_fen, 1)) AS indicators
FROM household
WHERE prev_fen > 0 AND (prev_fen - now_fen) > $income_drop_share * prev_fen
