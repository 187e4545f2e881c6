-- rule: vehicle_registered
-- title: enrolled household owns a car (eligibility review)
-- legal basis: Measures for the Determination of Minimum Living Guarantee Recipients (2021), art. 11: households owning a motor vehicle other than for disability or basic livelihood are in principle not eligible (应退尽退)
-- sources: property
-- A member of an enrolled household has a vehicle (farm vehicles excepted) registered,
-- worth at least $vehicle_value_yuan yuan.
SELECT m.household_id,
       printf('%d vehicle(s) registered, worth %d yuan in all', count(*),
              sum(p.value_fen) // 100) AS finding,
       json_object('vehicles', count(*), 'value_yuan', sum(p.value_fen) // 100) AS indicators
FROM property p JOIN members m USING (person_id)
WHERE m.status = 'enrolled' AND p.kind = 'vehicle'
  AND p.value_fen >= $vehicle_value_yuan * 100::BIGINT
GROUP BY m.household_id
