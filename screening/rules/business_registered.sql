-- rule: business_registered
-- title: enrolled household runs a business (eligibility review)
-- legal basis: Measures for the Determination of Minimum Living Guarantee Recipients (2021), art. 11: households that register a business beyond a sole trade for a living are in principle not eligible (应退尽退)
-- sources: business
-- A member of an enrolled household is registered for an active business with a
-- registered capital of at least $business_capital_yuan yuan.
SELECT m.household_id,
       printf('%d active business(es), registered capital %d yuan', count(*),
              sum(b.capital_fen) // 100) AS finding,
       json_object('businesses', count(*), 'capital_yuan', sum(b.capital_fen) // 100,
                   'credit_code', min(b.credit_code)) AS indicators
FROM business b JOIN members m USING (person_id)
WHERE m.status = 'enrolled' AND b.status = 'active'
  AND b.capital_fen >= $business_capital_yuan * 100::BIGINT
GROUP BY m.household_id
